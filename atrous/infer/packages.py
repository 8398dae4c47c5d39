"""Optional runtimes (ONNX Runtime, OpenVINO, NNCF) and the error that says how to install one.

Each runtime is an extra of the package (``atrous[onnx]``, ``atrous[openvino]``); code
that needs one asks ``require_packages`` first, so a user without it reads the ``pip``
line that installs it instead of a bare ``ModuleNotFoundError``. This module imports
nothing from atrous, so every runtime module (and the benchmark) can import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

__all__ = ["MissingPackageError", "require_packages"]


class MissingPackageError(ImportError):
    """An optional runtime is not installed; the message names the extra that installs it.

    The benchmark skips a variant that raises it instead of failing the run.
    """


def require_packages(packages: Sequence[str], *, extra: str, purpose: str) -> None:
    """Raise ``MissingPackageError`` unless every one of ``packages`` imports.

    Args:
        packages: module names (``"openvino"``, ``"nncf"``).
        extra: the atrous extra that installs them (``"openvino"``).
        purpose: what needs them, for the message (``"OpenVINO int8"``).
    """
    missing = []
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise MissingPackageError(
            f"{purpose} needs {', '.join(missing)}, not installed (pip install 'atrous[{extra}]')"
        )
