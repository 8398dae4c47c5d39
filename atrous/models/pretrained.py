"""Save and load models as safetensors weights plus a JSON config; no pickle.

A saved model is a folder with ``model.safetensors`` (the state dict) and
``config.json`` (the builder config, class names, palette, free-form metadata and the
atrous version that wrote it). Both are written atomically (temporary file in the same
folder, fsync, ``os.replace``) so an interrupted save never leaves a half-written file
under the final name.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from atrous.files import atomic_write
from atrous.models.config import fold_legacy_schedule
from atrous.models.segmentor import Segmentor

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "atrous-model"
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def shipped_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def input_normalization(model: Any) -> dict[str, Any]:
    """How ``model`` wants its input: what every atrous path feeds it (RGB in [0, 1]
    normalised with the ImageNet mean and std) and, where the backbone's weights were
    trained on another normalisation, the one the model converts it to inside its graph
    (EfficientNet-Lite: mean = std = 0.5), so no caller needs a flag."""
    from atrous.constants import IMAGENET_MEAN, IMAGENET_STD

    document: dict[str, Any] = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    adapter = getattr(getattr(model, "backbone", None), "input_adapter", None)
    if adapter is not None:
        document["backbone_weights_expect"] = {"mean": adapter.mean, "std": adapter.std}
    return document


def save_pretrained(
    model: Segmentor,
    directory: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Args:
        model: a model from ``atrous.models.build_model``.
        directory: output folder.
        class_names: class names; defaults to ``model.class_names``.
        palette: one RGB triple per class; defaults to ``model.palette``.
        metadata: JSON-serialisable extras (dataset, metrics, training recipe).

    Returns:
        The folder path.

    Example:
        ```python
        import tempfile

        import atrous

        model = atrous.build_model("dilated_net", num_classes=2, width=8)
        folder = atrous.save_pretrained(model, tempfile.mkdtemp(), class_names=["sky", "road"])
        assert atrous.load_pretrained(folder).class_names == ["sky", "road"]
        ```
    """
    import atrous

    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise TypeError(
            f"{type(model).__name__} has no builder config; save models built by "
            "atrous.models.build_model"
        )
    names = list(class_names) if class_names is not None else model.class_names
    colours = palette if palette is not None else model.palette
    if names is not None and len(names) != model.num_classes:
        raise ValueError(
            f"got {len(names)} class names for a model with {model.num_classes} classes"
        )
    if colours is not None:
        colours = [[int(c) for c in colour] for colour in colours]
        if any(len(colour) != 3 for colour in colours):
            raise ValueError("palette entries must be RGB triples")
    document = {
        "format": FORMAT_NAME,
        "atrous_version": atrous.__version__,
        "model": config,
        "class_names": names,
        "palette": colours,
        "input_normalization": input_normalization(model),
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(document, indent=2) + "\n"
    except TypeError as error:
        raise TypeError(
            f"cannot save {config['name']}: its config or metadata is not JSON-serialisable "
            f"({error}); build it with named options (e.g. norm='batch', not a callable)"
        ) from error
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write(
        out / WEIGHTS_FILE, lambda path: save_file(state, str(path), metadata={"format": "pt"})
    )
    atomic_write(out / CONFIG_FILE, lambda path: path.write_text(text, encoding="utf-8"))
    return out


def _resolve(name_or_dir: str | os.PathLike[str]) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    shipped = shipped_models()
    if isinstance(name_or_dir, str) and name_or_dir in shipped:
        return SHIPPED_DIR / name_or_dir
    raise FileNotFoundError(
        f"no saved model at {str(name_or_dir)!r}: it is neither a folder nor a shipped model "
        f"name. Shipped models: {shipped or 'none'}; a folder written by save_pretrained "
        f"(holding {CONFIG_FILE} and {WEIGHTS_FILE}) works too"
    )


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved model folder, with a clear error if broken."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: a saved model folder needs {CONFIG_FILE}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-save the model") from error
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
        raise ValueError(f"{path} has no 'model' config object; was it written by save_pretrained?")
    if "name" not in document["model"]:
        raise ValueError(f"{path}: the 'model' config has no 'name'")
    return document


def class_dependent_keys(config: dict[str, Any], num_classes: int) -> list[str]:
    """State-dict keys whose shape depends on the class count: the classifier's last convs.

    Found by building the model twice on PyTorch's ``meta`` device (shapes only, no
    memory), with its own class count and with ``num_classes``, and comparing shapes. No
    layer name is guessed, so it holds for every head (DUC's last conv has
    ``num_classes * r**2`` channels, the auxiliary classifier has its own).
    """
    from atrous.models.registry import build_model

    options = {key: value for key, value in config.items() if key != "num_classes"}
    with torch.device("meta"):
        own = build_model(**config).state_dict()
        other = build_model(**options, num_classes=num_classes).state_dict()
    return [key for key, tensor in own.items() if other[key].shape != tensor.shape]


def artifact_home(model: Any) -> Path | None:
    """The folder where files derived from ``model`` (a converted OpenVINO graph) may be
    kept beside it: the saved folder ``load_pretrained`` read it from.

    None for a model built in memory and for a shipped model, whose folder is part of the
    installed package (a wheel or a source checkout, not a place for caches): their
    derived files go to the user cache (``atrous.infer.cache.artifact_folder``).
    """
    source = getattr(model, "source_dir", None)
    if source is None:
        return None
    source = Path(source).resolve()
    if source.is_relative_to(SHIPPED_DIR.resolve()):
        return None
    return source


def load_pretrained(
    name_or_dir: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> Segmentor:
    """Rebuild a model from ``config.json`` and load ``model.safetensors`` into it.

    With ``num_classes`` different from the saved model's, the head is swapped for
    fine-tuning: every weight loads except the classifier's class-dependent convs
    (``class_dependent_keys``), which keep the fresh initialisation of a model built
    for ``num_classes``. Its class names and palette are cleared (they named the old
    classes) and ``metadata["fine_tuned_from"]`` records where the weights came from.

    Args:
        name_or_dir: a folder written by ``save_pretrained``, or the name of a model
            shipped in ``atrous/models/weights/``.
        map_location: device the weights are loaded onto.
        num_classes: the class count wanted (default: the saved model's).

    Returns:
        The model in eval mode, with ``class_names`` and ``palette`` set and
        ``source_dir`` naming the folder it was read from.

    Example:
        ```python
        import torch

        import atrous

        model = atrous.load_pretrained("camvid").eval()  # shipped inside the package
        with torch.no_grad():
            labels = model(torch.randn(1, 3, 360, 480)).argmax(1)
        print(model.class_names[labels[0, 180, 240]])
        five = atrous.load_pretrained("camvid", num_classes=5)  # a new classifier, same body
        ```
    """
    from atrous.models.registry import MODELS, build_model

    directory = _resolve(name_or_dir)
    document = read_config(directory)
    config = dict(document["model"])
    if config["name"] in MODELS:  # atrous 0.1 configs spread the schedule over three keys
        builder = inspect.signature(MODELS[config["name"]]).parameters
        default = builder["dilation_schedule"].default if "dilation_schedule" in builder else None
        config = fold_legacy_schedule(config, default)
    saved_classes = config.get("num_classes")
    swap = num_classes is not None and num_classes != saved_classes
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes={num_classes}; expected a positive class count")
    dropped = class_dependent_keys(config, num_classes) if swap else []
    model = build_model(**{**config, "num_classes": num_classes}) if swap else build_model(**config)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"missing {weights_path}: a saved model folder needs {WEIGHTS_FILE}"
        )
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"cannot read weights from {weights_path}: {error}") from error
    mismatch = f"{weights_path} does not match the model in {directory / CONFIG_FILE}"
    for key in dropped:
        state.pop(key, None)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"{mismatch}: {error}") from error
    missing = [key for key in result.missing_keys if key not in dropped]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{mismatch}: missing keys {missing[:5]}, unexpected keys {result.unexpected_keys[:5]}"
        )
    model.to(map_location)
    model.metadata = document.get("metadata") or {}
    model.source_dir = directory.resolve()
    if swap:
        model.class_names = None
        model.palette = None
        model.metadata = {
            **model.metadata,
            "fine_tuned_from": {"model": str(name_or_dir), "num_classes": saved_classes},
        }
        return model.eval()
    model.class_names = document.get("class_names")
    palette = document.get("palette")
    model.palette = [tuple(colour) for colour in palette] if palette is not None else None
    return model.eval()
