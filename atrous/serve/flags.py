"""Command-line flags generated from ``ServeConfig``: one source for every front end.

``atrous serve`` and ``python -m atrous.scale.ray_serve`` both read their service flags
from here, so a new ServeConfig field is a new flag everywhere, typed and documented from
the dataclass's docstring.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from typing import Any

from atrous.serve.config import ServeConfig

# Short spellings kept from earlier versions of the command.
ALIASES = {
    "request_timeout_s": ("--request-timeout",),
    "max_concurrent_inferences": ("--max-concurrent",),
    "max_queued_requests": ("--max-queue",),
}
_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float}


def attribute_help(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring, as ``{name: text}``."""
    doc = inspect.getdoc(cls) or ""
    _, _, section = doc.partition("Attributes:\n")
    helps: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name = entry[1]
            helps[name] = entry[2]
        elif name and line.startswith("        "):
            helps[name] += " " + line.strip()
        elif line.strip() == "" or not line.startswith(" "):
            name = None
    return helps


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``ServeConfig`` field, typed and documented from the dataclass."""
    helps = attribute_help(ServeConfig)
    for field in dataclasses.fields(ServeConfig):
        flags = (f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, ()))
        text = helps.get(field.name, "").replace("%", "%%")
        if field.default is dataclasses.MISSING:
            parser.add_argument(*flags, dest=field.name, required=True, help=text)
        elif field.type == "tuple[str, ...]":
            parser.add_argument(
                *flags,
                dest=field.name,
                nargs="*",
                default=list(field.default),
                metavar="VALUE",
                help=f"{text} (default: none)",
            )
        else:
            parser.add_argument(
                *flags,
                dest=field.name,
                type=_TYPES[str(field.type)],
                default=field.default,
                metavar=str(field.type).upper(),
                help=f"{text} (default: %(default)s)",
            )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The ``ServeConfig`` the command line asks for (validated)."""
    return ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})
