"""The run's ``best/`` folder: replaced without ever leaving it torn, recovered after a kill.

``best/`` is a ``save_pretrained`` folder. Replacing it takes three steps: write the new
model to ``best.tmp/``, rename ``best/`` to ``best.old/``, rename ``best.tmp/`` to
``best/`` (then delete ``best.old/``). A kill between the two renames leaves no
``best/`` but two complete folders; ``recover_best`` (run at every training start)
puts the newer one back, and ``explain_missing_best`` tells ``atrous eval`` users
what happened when they look before that.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)


def _siblings(best_dir: Path) -> tuple[Path, Path]:
    return best_dir.with_name(best_dir.name + ".tmp"), best_dir.with_name(best_dir.name + ".old")


def _complete(folder: Path) -> bool:
    """A finished ``save_pretrained`` folder: ``config.json`` is written last, atomically."""
    from atrous.models.pretrained import CONFIG_FILE, WEIGHTS_FILE

    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def save_best(model: nn.Module, best_dir: Path, metadata: dict[str, Any]) -> None:
    """Replace ``best_dir`` with a fresh ``save_pretrained`` folder, never leaving it empty."""
    from atrous.models import save_pretrained

    tmp, old = _siblings(best_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, metadata=metadata)  # type: ignore[arg-type]
    if best_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        best_dir.rename(old)
    tmp.rename(best_dir)
    shutil.rmtree(old, ignore_errors=True)


def recover_best(best_dir: Path) -> str | None:
    """Undo what a kill inside ``save_best`` left; returns what was done, if anything.

    ``best/`` missing: the newer complete folder (``best.tmp/``, else ``best.old/``)
    becomes ``best/``. Then leftovers (a half-written ``best.tmp/``, a ``best.old/``
    not yet deleted) are removed.
    """
    tmp, old = _siblings(best_dir)
    done = None
    if not best_dir.exists():
        for candidate in (tmp, old):
            if candidate.is_dir() and _complete(candidate):
                candidate.rename(best_dir)
                done = f"restored {best_dir} from {candidate.name} (a kill interrupted its update)"
                break
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
            done = done or f"removed {leftover}, left by a kill while {best_dir} was updated"
    return done


def _val_miou(folder: Path) -> str:
    try:
        metadata = json.loads((folder / "config.json").read_text())["metadata"]
        return f"epoch {metadata['epoch']}, val mIoU {100 * metadata['val_miou']:.2f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "no metadata"


def explain_missing_best(path: str | Path) -> str | None:
    """Why a run's ``best/`` folder is missing, when a kill during its update is why.

    Returns None unless ``path`` does not exist and ``path.tmp`` or ``path.old`` does.
    """
    best_dir = Path(path)
    if best_dir.exists():
        return None
    tmp, old = _siblings(best_dir)
    found = [f for f in (tmp, old) if f.is_dir()]
    if not found:
        return None
    described = ", ".join(f"{f} ({_val_miou(f) if _complete(f) else 'incomplete'})" for f in found)
    complete = [f for f in found if _complete(f)]
    return (
        f"{best_dir} is missing: training was killed while replacing it, leaving {described}. "
        f"Any `atrous train ... --out {best_dir.parent}` start (with --resume to continue) "
        "restores it" + (f"; or evaluate {complete[0]} directly" if complete else "")
    )
