"""The ``atrous`` command. One module per subcommand, each exposing ``register(subparsers)``.

A subcommand module adds its parser with ``subparsers.add_parser(...)`` and sets
``func=run`` where ``run(args) -> int`` is the exit status. Heavy imports (torch, the
models) happen inside ``run`` so that ``atrous --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

import atrous

# Order shown in `atrous --help`.
SUBCOMMANDS = (
    "demo",
    "rf",
    "hdc",
    "erf",
    "models",
    "data",
    "train",
    "eval",
    "adjust-prior",
    "predict",
    "export",
    "quantize",
    "bench",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atrous",
        description="Semantic segmentation built around dilated (atrous) convolutions.",
    )
    parser.add_argument("--version", action="version", version=f"atrous {atrous.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module_name = f"atrous.cli.{name.replace('-', '_')}"
        if importlib.util.find_spec(module_name) is None:
            # A typo in SUBCOMMANDS must not hide a command: fail, naming it.
            raise RuntimeError(
                f"atrous.cli.SUBCOMMANDS names {name!r} but there is no module {module_name}"
            )
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.verbose or not is_user_error(error):
            raise  # a real bug: the traceback is what a report needs
        print(f"atrous {args.command}: error: {describe_error(error)}", file=sys.stderr)
        print("(run with -v for the traceback)", file=sys.stderr)
        return 2


#: Exceptions that mean the input was wrong, not the program: a path that is not
#: there or cannot be written, a full or read-only disk, a bad value, an unreadable
#: file. atrous raises ValueError subclasses with a message for every value it refuses.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's input (one line is the answer) or a bug (traceback)."""
    if isinstance(error, (UnicodeError, RecursionError)):
        return False
    return isinstance(error, USER_ERRORS)


def describe_error(error: BaseException) -> str:
    """One line for the user: the OS's words and the path for file errors."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
