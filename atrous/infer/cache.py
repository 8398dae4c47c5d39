"""Files derived from a model's weights (a converted runtime graph), kept beside the model
or in the user's cache, and reused only while they provably belong to those weights.

A derived file is named by a key that covers everything it was made from (the weights'
digest, the converter's version, the options). A JSON record beside it holds that key
and the SHA-256 of each file; a file is reused only when its record reads, names the
same key and every hash matches. A truncated or edited file, or one made from other
weights, is rebuilt, never loaded. Rebuilding is the worst a damaged cache can cost, so
the files are not synced to disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atrous.files import atomic_write, user_cache_dir

__all__ = [
    "artifact_folder",
    "file_sha256",
    "read_record",
    "record_problem",
    "tensors_digest",
    "verify_record",
    "weights_digest",
    "write_record",
]

LOGGER = logging.getLogger(__name__)
DIGEST_LENGTH = 16


def _add_tensor(hasher: Any, label: str, tensor: torch.Tensor) -> None:
    """Hash a label, the dtype, the shape and the raw bytes; the header holds the byte
    count, so where one tensor ends and the next begins is never ambiguous."""
    data = tensor.detach().cpu().contiguous()
    header = [label, str(data.dtype), list(data.shape), data.numel() * data.element_size()]
    hasher.update(json.dumps(header).encode() + b"\n")
    hasher.update(data.reshape(-1).view(torch.uint8).numpy())


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the state dict: every key in sorted order with its
    dtype, shape and bytes. A change to any weight or buffer changes it; a deep copy of
    the model has the same one."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        _add_tensor(hasher, name, tensor)
    return hasher.hexdigest()[:DIGEST_LENGTH]


def tensors_digest(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) of a sequence of tensors, in order (calibration
    batches: the same images give the same int8 model)."""
    hasher = hashlib.sha256()
    for index, tensor in enumerate(tensors):
        _add_tensor(hasher, str(index), tensor)
    return hasher.hexdigest()[:DIGEST_LENGTH]


def file_sha256(path: Path) -> str:
    """Full SHA-256 of a file, read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _writable_folder(folder: Path) -> None:
    """Create ``folder`` and write a scratch file in it; OSError when either fails."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def artifact_folder(model_dir: Path | None, kind: str) -> Path:
    """Where files of ``kind`` derived from a model are kept (created on demand).

    ``<model_dir>/cache/<kind>`` when the model has a folder that can be written, so the
    files travel with the model and go when it is deleted; otherwise (no folder, a
    read-only one) ``<user cache>/<kind>`` (``$ATROUS_CACHE_DIR``, by default
    ``~/.cache/atrous``).

    Raises:
        OSError: the user cache folder cannot be created either.
    """
    if model_dir is not None:
        folder = Path(model_dir) / "cache" / kind
        if Path(model_dir).is_dir():
            try:
                _writable_folder(folder)
                return folder
            except OSError as error:
                reason = error.strerror or str(error)
        else:
            reason = "no such folder"
        LOGGER.info(
            "%s cannot hold the %s cache (%s); using the user cache", model_dir, kind, reason
        )
    folder = user_cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_record(
    record: Path, key: str, files: Sequence[Path], details: Mapping[str, Any] | None = None
) -> None:
    """Write ``record`` (JSON, atomically): ``key``, ``details`` and each file's SHA-256.

    Args:
        record: the JSON file; the files must be in its folder (they are named relative
            to it, so the folder can be moved whole).
        key: what the files were made from; ``verify_record`` compares it.
        files: the artifact files, complete and in place.
        details: JSON-serialisable facts for people and callers (versions, timings).
    """
    record = Path(record)
    strangers = [str(path) for path in files if Path(path).parent != record.parent]
    if strangers:
        raise ValueError(f"files {strangers} are not in the record's folder {record.parent}")
    document = {
        "key": key,
        "details": dict(details or {}),
        "files": {Path(path).name: file_sha256(Path(path)) for path in files},
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    atomic_write(record, lambda path: path.write_text(text, encoding="utf-8"), fsync=False)


def read_record(record: Path) -> dict[str, Any] | None:
    """The record's content, or None when it is missing, unreadable or malformed."""
    try:
        document = json.loads(Path(record).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("key"), str):
        return None
    files = document.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return None
    if not isinstance(document.get("details", {}), dict):
        return None
    return document


def record_problem(record: Path, key: str, files: Sequence[Path]) -> str | None:
    """What stops ``files`` from being reused under ``key``, in words naming the file at
    fault; None when the record reads, has this key, lists exactly these files and
    every hash matches."""
    record = Path(record)
    document = read_record(record)
    if document is None:
        state = "is unreadable or not a cache record" if record.exists() else "is missing"
        return f"{record} {state}"
    if document["key"] != key:
        return f"{record} was written for another key ({document['key']!r}, expected {key!r})"
    names = sorted(Path(path).name for path in files)
    if sorted(document["files"]) != names:
        return f"{record} lists {sorted(document['files'])}, expected {names}"
    for path in files:
        path = record.parent / Path(path).name
        try:
            digest = file_sha256(path)
        except OSError as error:
            return f"{path} cannot be read ({error.strerror or error})"
        if digest != document["files"][path.name]:
            return f"{path} does not match the SHA-256 in {record.name} (changed or truncated)"
    return None


def verify_record(record: Path, key: str, files: Sequence[Path]) -> bool:
    """True when ``files`` may be reused under ``key`` (see ``record_problem``); never raises
    for a missing, damaged or foreign cache."""
    return record_problem(record, key, files) is None
