"""OpenVINO fp32 and NNCF post-training int8 for the same weights as the PyTorch model.

OpenVINO is what many Intel-CPU deployments run, so ``atrous bench`` times it beside
atrous's own fast path and ONNX Runtime: a speed claim only means something against the
runtime a user would otherwise pick. OpenVINO and NNCF are the optional extra
``atrous[openvino]``; nothing else in atrous imports this module.

Two choices that decide what is measured:

* **fp32 means fp32.** On CPUs with AMX or AVX512-BF16 OpenVINO's CPU plugin runs in
  bf16 by default (``INFERENCE_PRECISION_HINT``); ``OpenVinoModel`` asks for f32
  unless told otherwise, so "OpenVINO fp32" is compared with fp32 and its argmax
  agreement is that of fp32.
* **One compiled model per input shape.** The converted graph keeps batch, height and
  width dynamic; each new input shape is compiled once with that shape fixed, as a
  deployment at one camera resolution would, so timing never includes shape inference
  and the first call at a shape (the benchmarks' warm-up) pays for the compile.

``cached_openvino_model`` is the runtime's entry point: converting (seconds) or
quantising with NNCF (longer) happens once per set of weights; the result is saved as
OpenVINO IR (``.xml`` + ``.bin``, fp32 weights kept fp32) with a record of what it was
made from (``atrous.infer.cache``), beside the model or in the user cache, and read back
on later calls while the record still matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atrous.infer.cache import (
    artifact_folder,
    read_record,
    record_problem,
    tensors_digest,
    weights_digest,
    write_record,
)
from atrous.infer.logits import LogitsOnly
from atrous.infer.packages import require_packages

__all__ = [
    "OPENVINO_CACHE_KIND",
    "MissingCalibrationError",
    "OpenVinoModel",
    "cached_openvino_model",
    "convert_to_openvino",
    "quantize_nncf_int8",
]

LOGGER = logging.getLogger(__name__)
OPENVINO_CACHE_KIND = "openvino"
PRECISIONS = ("fp32", "int8")
# The converted graph's input: what convert_to_openvino leaves free. Part of the key, so a
# change of policy (fixed sizes, say) never reads an IR made under the old one.
SIZE_POLICY = "batch, height and width dynamic"


class MissingCalibrationError(ValueError):
    """OpenVINO int8 was asked for without calibration images and none is cached for
    these weights; the message gives the command that makes one."""


def convert_to_openvino(model: nn.Module, example: torch.Tensor) -> Any:
    """The model as an ``openvino.Model`` (OpenVINO's PyTorch frontend, traced on
    ``example``), input dimensions left dynamic.

    The PyTorch frontend is OpenVINO's recommended path for a PyTorch model and needs no
    ONNX file; the weights are the model's own.
    """
    import openvino as ov

    wrapped = LogitsOnly(model).eval()
    with torch.no_grad():
        converted = ov.convert_model(wrapped, example_input=example)
    # Batch, height and width free: convert_model may fix them from the example.
    converted.reshape([-1, example.shape[1], -1, -1])
    return converted


def _last_convolution_name(ov_model: Any) -> str:
    """Friendly name of the graph's last convolution (the classifier of a segmenter)."""
    names = [
        op.get_friendly_name()
        for op in ov_model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    ]
    if not names:
        raise ValueError("the OpenVINO model has no Convolution node")
    return names[-1]


def quantize_nncf_int8(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    keep_classifier_fp32: bool = False,
) -> Any:
    """NNCF post-training int8 quantisation of the converted model (an ``openvino.Model``).

    NNCF's defaults (symmetric "performance" preset, fast bias correction) are kept: this
    is the int8 a user gets from the documented recipe, compared with atrous's int8
    (``atrous.infer.quantize.quantize_int8``) on the same calibration images.

    Args:
        model: the fp32 PyTorch model.
        calibration: normalised ``NxCxHxW`` batches that set the activation ranges (the
            first is also the conversion example). Measure agreement on other images.
        keep_classifier_fp32: leave the last convolution in fp32, as atrous's int8 does
            by default (NNCF's default quantises it).
    """
    import nncf

    if not calibration:
        raise ValueError("quantize_nncf_int8 needs at least one calibration batch")
    converted = convert_to_openvino(model, calibration[0])
    ignored = (
        nncf.IgnoredScope(names=[_last_convolution_name(converted)])
        if keep_classifier_fp32
        else None
    )
    dataset = nncf.Dataset([x.detach().cpu().float().numpy() for x in calibration])
    options: dict[str, Any] = {"subset_size": len(calibration)}
    if ignored is not None:
        options["ignored_scope"] = ignored
    return nncf.quantize(converted, dataset, **options)


class OpenVinoModel:
    """An ``openvino.Model`` run on the CPU behind the ``model(x) -> logits`` call that
    ``atrous.infer.Predictor`` and ``atrous bench`` expect.

    Args:
        ov_model: a converted (and possibly NNCF-quantised) model.
        threads: OpenVINO's inference threads (its default: every core it sees).
        precision: ``INFERENCE_PRECISION_HINT`` for the layers that are not int8:
            ``"f32"`` (default) or ``"bf16"``.
    """

    def __init__(
        self, ov_model: Any, *, threads: int | None = None, precision: str = "f32"
    ) -> None:
        import openvino as ov

        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', got {precision!r}")
        self.core = ov.Core()
        self.model = ov_model
        self.config: dict[str, str] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            self.config["INFERENCE_NUM_THREADS"] = str(threads)
        self._compiled: dict[tuple[int, ...], Any] = {}

    def compiled(self, shape: Sequence[int]) -> Any:
        """The model compiled for one input shape (compiled on first use)."""
        key = tuple(int(d) for d in shape)
        if key not in self._compiled:
            fixed = self.model.clone()
            fixed.reshape(list(key))
            self._compiled[key] = self.core.compile_model(fixed, "CPU", self.config)
        return self._compiled[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().float().contiguous().numpy()
        result = self.compiled(array.shape)(array)
        return torch.from_numpy(result[0].copy())


@dataclass(frozen=True)
class _CacheEntry:
    """One cached IR: its folder (None when no cache folder can be used), the key that
    names its files and the facts the key was made from."""

    folder: Path | None
    key: str
    parts: dict[str, str] = field(default_factory=dict)

    @property
    def xml(self) -> Path:
        # Without a folder nothing is read or written; the name is never used then.
        return Path(self.folder or ".") / f"{self.key}.xml"

    @property
    def files(self) -> tuple[Path, Path]:
        return self.xml, self.xml.with_suffix(".bin")

    @property
    def record(self) -> Path:
        return self.xml.with_suffix(".json")


def _architecture_digest(model: nn.Module) -> str:
    """The graph beyond its weights: the same weights at output stride 8 and 16 are two
    graphs. The builder config and the module tree (every conv's stride, dilation and
    padding) tell them apart."""
    text = json.dumps(
        [type(model).__qualname__, getattr(model, "config", None), repr(model)],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_entry(
    model: nn.Module, precision: str, channels: int, model_dir: Path | None
) -> _CacheEntry:
    """The key of ``model``'s IR at ``precision`` and the folder that holds it."""
    import openvino as ov

    import atrous

    parts = {
        "weights": weights_digest(model),
        "architecture": _architecture_digest(model),
        "precision": precision,
        "input": f"{channels} channels; {SIZE_POLICY}",
        "openvino": ov.get_version(),
        "atrous": atrous.__version__,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    try:
        folder: Path | None = artifact_folder(model_dir, OPENVINO_CACHE_KIND)
    except OSError as error:
        LOGGER.warning("no OpenVINO cache folder (%s); the model is converted every time", error)
        folder = None
    return _CacheEntry(folder, f"{precision}-{digest}", parts)


def _int8_recipe(calibration: Sequence[torch.Tensor]) -> dict[str, str]:
    """What an int8 IR depends on beyond the weights: the calibration images and NNCF."""
    import nncf

    return {"calibration": tensors_digest(calibration), "nncf": nncf.__version__}


def _read_cached(entry: _CacheEntry, recipe: dict[str, str]) -> Any | None:
    """The cached IR when its record vouches for it (and, with ``recipe``, it was made
    from the same calibration); None, with the reason logged, otherwise."""
    import openvino as ov

    if entry.folder is None:
        return None
    if not any(path.exists() for path in (*entry.files, entry.record)):
        LOGGER.info("no cached OpenVINO model %s in %s", entry.key, entry.folder)
        return None
    start = time.perf_counter()  # checking the hashes is part of the cost of a hit
    problem = record_problem(entry.record, entry.key, entry.files)
    if problem is not None:
        LOGGER.warning("OpenVINO cache not used: %s; rebuilding it", problem)
        return None
    details = (read_record(entry.record) or {}).get("details", {})
    if any(details.get(name) != value for name, value in recipe.items()):
        LOGGER.info(
            "%s was calibrated on other images or by another NNCF; quantising again", entry.xml
        )
        return None
    try:
        ov_model = ov.Core().read_model(str(entry.xml))
    except Exception as error:  # OpenVINO's own exception types; any of them means rebuild
        LOGGER.warning(
            "OpenVINO cache not used: %s cannot be read (%s); rebuilding it", entry.xml, error
        )
        return None
    LOGGER.info(
        "OpenVINO model checked and read from %s in %.2f s", entry.xml, time.perf_counter() - start
    )
    return ov_model


def _missing_calibration(entry: _CacheEntry, model_dir: Path | None) -> MissingCalibrationError:
    where = f"in {entry.folder}" if entry.folder is not None else "(no cache folder)"
    return MissingCalibrationError(
        f"OpenVINO int8 needs calibration images: none were given and no int8 model for "
        f"these weights is cached {where}. Quantise once with: atrous quantize --model "
        f"{model_dir or 'MODEL'} --runtime openvino --calib DIR (DIR: images like those the "
        f"model will see), or pass calibration= to cached_openvino_model"
    )


def _build(
    model: nn.Module,
    precision: str,
    example: torch.Tensor,
    calibration: Sequence[torch.Tensor] | None,
) -> Any:
    """Convert (fp32) or convert and quantise (int8) ``model``, logging how long it took."""
    start = time.perf_counter()
    if precision == "int8":
        ov_model = quantize_nncf_int8(model, calibration or ())
        done = "converted and quantised with NNCF"
    else:
        ov_model = convert_to_openvino(model, example)
        done = "converted"
    LOGGER.info("OpenVINO %s model %s in %.1f s", precision, done, time.perf_counter() - start)
    return ov_model


def _save(entry: _CacheEntry, ov_model: Any, details: dict[str, str]) -> None:
    """Write the IR and then its record; a failure only costs a rebuild next time."""
    import openvino as ov

    if entry.folder is None:
        return
    try:
        # No record while the files change: a crash in between leaves a miss, not a lie.
        entry.record.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix=".saving-", dir=entry.folder) as scratch:
            ov.save_model(ov_model, str(Path(scratch) / entry.xml.name), compress_to_fp16=False)
            for path in entry.files:
                os.replace(Path(scratch) / path.name, path)
        write_record(entry.record, entry.key, entry.files, details)
    except (OSError, RuntimeError) as error:
        LOGGER.warning("OpenVINO model not cached in %s (%s)", entry.folder, error)
        return
    LOGGER.info("OpenVINO model cached as %s", entry.xml)


def cached_openvino_model(
    model: nn.Module,
    *,
    precision: str,
    example: torch.Tensor,
    model_dir: Path | None = None,
    calibration: Sequence[torch.Tensor] | None = None,
    threads: int | None = None,
    inference_precision: str = "f32",
) -> OpenVinoModel:
    """``model`` as an ``OpenVinoModel``, converted (or quantised) once per set of weights.

    The IR is looked up in ``artifact_folder(model_dir, "openvino")`` under a key made of
    the weights' digest, the architecture, the precision, the input policy (batch, height
    and width dynamic) and the OpenVINO and atrous versions. A record that verifies means
    the IR is read instead of converted; a missing one means convert and save; a damaged
    one (truncated ``.bin``, edited ``.xml``, bad JSON) is logged as a warning naming the
    file and rebuilt. A cache that cannot be written only costs the conversion next time.

    Args:
        model: the PyTorch model (any ``nn.Module`` whose forward gives logits).
        precision: ``"fp32"`` or ``"int8"`` (NNCF post-training quantisation).
        example: a normalised ``NxCxHxW`` batch to trace the conversion on (int8 traces
            on the first calibration batch); its channel count is part of the key.
        model_dir: the model's folder (``atrous.models.pretrained.artifact_home``);
            None or a read-only folder puts the cache under ``$ATROUS_CACHE_DIR``.
        calibration: int8 only: batches that set the activation ranges. Given, the
            model is quantised unless an IR from the same batches is cached; not given,
            the cached int8 IR of these weights is used.
        threads: OpenVINO's inference threads (default: every core it sees).
        inference_precision: ``"f32"`` (default) or ``"bf16"`` for layers not in int8.

    Raises:
        MissingPackageError: openvino (or, to quantise, nncf) is not installed.
        MissingCalibrationError: int8 without calibration and without a cached int8 IR.
        ValueError: an unknown precision, an example that is not 4-D, an empty
            calibration list.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if inference_precision not in ("f32", "bf16"):
        raise ValueError(
            f"inference_precision must be 'f32' or 'bf16', got {inference_precision!r}"
        )
    if example.dim() != 4:
        raise ValueError(f"example must be an NxCxHxW batch, got shape {tuple(example.shape)}")
    quantising = precision == "int8" and calibration is not None
    if quantising and not calibration:
        raise ValueError("calibration is empty; give at least one batch or None")
    packages = ("openvino", "nncf") if quantising else ("openvino",)
    require_packages(packages, extra="openvino", purpose=f"OpenVINO {precision}")
    entry = _cache_entry(model, precision, int(example.shape[1]), model_dir)
    recipe = _int8_recipe(calibration) if quantising and calibration else {}
    ov_model = _read_cached(entry, recipe)
    if ov_model is None:
        if precision == "int8" and not quantising:
            raise _missing_calibration(entry, model_dir)
        ov_model = _build(model, precision, example, calibration)
        _save(entry, ov_model, {**entry.parts, **recipe})
    return OpenVinoModel(ov_model, threads=threads, precision=inference_precision)
