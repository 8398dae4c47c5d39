"""Training checkpoints as safetensors + JSON, written atomically; no pickle anywhere.

A checkpoint is two files in ``<run>/checkpoints/``:

- ``<name>.safetensors``: every tensor: ``model.*`` (state dict), ``optim.<param>.<key>``
  (optimiser state tensors such as SGD momentum buffers or AdamW moments) and
  ``rng.*`` (torch CPU/CUDA and numpy generator states).
- ``<name>.json``: everything scalar: epoch, iteration, step within the epoch, optimiser
  param groups and non-tensor state, scheduler, grad-scaler, python RNG state, history,
  and the ``id`` stored in the safetensors metadata.

Each file is written to a temporary file in the same folder, fsync'ed and renamed. The
JSON goes last and acts as the commit record: a checkpoint counts only when its JSON
exists and names the ``id`` found in its safetensors, so a kill between the two renames
leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from atrous.files import atomic_write_bytes

FORMAT = "atrous-checkpoint-v1"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch, CUDA, numpy and python RNG states split into tensors and JSON scalars."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    scalars = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    return tensors, scalars


def set_rng_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state(
        (kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, internal, gauss_next = scalars["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param}.{key}"] = value
            else:
                scalars.setdefault(str(param), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param, key = name.split(".", 2)
            state.setdefault(int(param), {})[key] = value
    for param, entries in meta["scalars"].items():
        state.setdefault(int(param), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: Path,
    name: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
    scaler_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``name.safetensors`` then ``name.json`` atomically; returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint_id = uuid.uuid4().hex
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_scalars = rng_state()
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    # safetensors refuses shared storage; cloning onto the CPU gives each tensor its own.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    atomic_write_bytes(
        folder / f"{name}.safetensors", save(tensors, metadata={"id": checkpoint_id})
    )
    document = {
        "format": FORMAT,
        "id": checkpoint_id,
        "tensors": f"{name}.safetensors",
        "optimizer": optim_meta,
        "rng": rng_scalars,
        "scaler": scaler_state,
        **info,
    }
    json_path = folder / f"{name}.json"
    atomic_write_bytes(json_path, json.dumps(document, default=_json_default).encode())
    return json_path


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        return {k: handle.get_tensor(k) for k in handle.keys()}, metadata  # noqa: SIM118


def latest_checkpoint(folder: Path) -> Path | None:
    """The JSON of the newest complete checkpoint in ``folder`` (by iteration), or None."""
    candidates = []
    for json_path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            document = json.loads(json_path.read_text())
            tensors_path = folder / document["tensors"]
            with safe_open(str(tensors_path), framework="pt") as handle:
                if (handle.metadata() or {}).get("id") != document["id"]:
                    continue
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            continue  # torn or foreign file: not a committed checkpoint
        candidates.append((document["iteration"], document.get("step_in_epoch", 0), json_path))
    return max(candidates)[2] if candidates else None


def load_checkpoint(
    json_path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    load_scaler: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Restore model, optimiser and RNG states in place; returns the JSON document."""
    document = json.loads(json_path.read_text())
    tensors, metadata = _read_tensors(json_path.parent / document["tensors"])
    if metadata.get("id") != document["id"]:
        raise ValueError(f"{json_path}: its tensors file belongs to another checkpoint")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_join_optimizer(tensors, document["optimizer"]))
    if load_scaler is not None and document.get("scaler"):
        load_scaler(document["scaler"])
    set_rng_state(tensors, document["rng"])
    return document


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest committed checkpoints, and what kills left behind.

    A checkpoint is deleted JSON first (its commit record), then its tensors, so a kill
    in between leaves a ``.safetensors`` that no JSON names: such orphans (~150 MB for a
    ResNet-50 DeepLab) are deleted here too, as are stray temporary files. Call it only
    when no checkpoint is being written into ``folder``.
    """
    documents = []
    for json_path in folder.glob("*.json"):
        try:
            documents.append((json.loads(json_path.read_text())["iteration"], json_path))
        except (OSError, ValueError, KeyError):
            continue
    for _, json_path in sorted(documents)[: max(0, len(documents) - keep)]:
        json_path.unlink(missing_ok=True)
        json_path.with_suffix(".safetensors").unlink(missing_ok=True)
    for orphan in _orphan_tensors(folder):
        orphan.unlink(missing_ok=True)
    for tmp in folder.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def _orphan_tensors(folder: Path) -> list[Path]:
    """``.safetensors`` files in ``folder`` that no checkpoint JSON there names."""
    named = set()
    for json_path in folder.glob("*.json"):
        named.add(json_path.with_suffix(".safetensors").name)
        try:
            named.add(str(json.loads(json_path.read_text())["tensors"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [path for path in folder.glob("*.safetensors") if path.name not in named]
