"""Writing files so that a kill, a full disk or a read-only folder never leaves half a file.

Every file atrous writes for the user to keep (checkpoints, saved models, masks) goes
through ``atomic_write``: the data go to a temporary name in the same folder, then
``os.replace`` puts them in place, so a reader sees the old file or the new one, never
part of one. When writing fails the temporary file is removed, the previous file is
left as it was, and the error names the file the user asked for, with the system's
words ("No space left on device", "Read-only file system").

Files atrous can rebuild (the sample-check cache, converted models) go under
``user_cache_dir()``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "ATROUS_CACHE_DIR"


def user_cache_dir() -> Path:
    """``$ATROUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/atrous``, else ``~/.cache/atrous``.

    One place decides it, so every cache atrous keeps moves together when a user points
    the variable elsewhere (a larger disk, a scratch folder in tests).
    """
    folder = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "atrous"
    )
    return Path(folder)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, fsync: bool = True
) -> None:
    """``write(temporary)`` then rename onto ``path``; nothing changes at ``path`` on failure.

    Args:
        path: the file to create or replace.
        write: writes the complete file at the path it is given.
        fsync: flush the data (and the folder entry) to the disk before and after the
            rename: what a checkpoint needs to survive a power cut; masks skip it.

    Raises:
        OSError: the write or the rename failed; ``filename`` is ``path``.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise _naming(error, path) from error
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        write(temporary_path)
        if fsync:
            with open(temporary_path, "rb") as handle:
                os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary_path, 0o666 & ~_umask())
        os.replace(temporary_path, path)
    except BaseException as error:
        temporary_path.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    if fsync:
        _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """``atomic_write`` of ``data``."""
    atomic_write(path, lambda temporary: temporary.write_bytes(data), fsync=fsync)


def _umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _naming(error: OSError, path: Path) -> OSError:
    """The same error, about ``path`` (not the temporary name the system saw)."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
