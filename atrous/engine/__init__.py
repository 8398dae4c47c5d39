"""Training, evaluation, metrics and checkpoints.

- ``Config`` and ``load_config``: frozen dataclasses + YAML + ``a.b=c`` overrides.
- ``train``: the training loop (CPU, CUDA with AMP, torchrun DDP), exact resume.
  Its parts: ``build`` (set-up), ``state`` (what a checkpoint holds), ``trainer`` (step,
  epoch, evaluation, checkpoint, stop signals), ``run_log`` (metrics.jsonl, progress,
  TensorBoard), ``budget`` (time budget and the schedule plan), ``precision`` (autocast
  and the CPU bfloat16 decision), ``best`` (the best/ folder), ``validate`` (config
  values, model options built on the meta device).
- ``evaluate``: whole / sliding-window / multi-scale+flip evaluation -> ``EvalResult``.
- ``atrous.engine.metrics``: ``ConfusionMatrix``, ``boundary_f1``.
"""

from atrous.engine.config import (
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    load_config,
    save_config,
)
from atrous.engine.evaluate import EvalResult, evaluate, predict_batch
from atrous.engine.losses import SegmentationLoss, poly_lr_factor
from atrous.engine.metrics import BoundaryF1, ConfusionMatrix, boundary_f1
from atrous.engine.trainer import NonFiniteLossError, TrainResult, train

__all__ = [
    "BoundaryF1",
    "Config",
    "ConfigError",
    "ConfusionMatrix",
    "DataConfig",
    "EvalConfig",
    "EvalResult",
    "LossConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "ScheduleConfig",
    "SegmentationLoss",
    "TrainConfig",
    "TrainResult",
    "boundary_f1",
    "evaluate",
    "load_config",
    "poly_lr_factor",
    "predict_batch",
    "save_config",
    "train",
]
