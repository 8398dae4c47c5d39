"""Model configs: the resolved keyword arguments of a builder, JSON-ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atrous.ops.schedule import DilationSchedule

LEGACY_SCHEDULE_OPTIONS = ("multi_grid", "hdc_rates")
"""Builder options of atrous 0.1 that the one ``dilation_schedule`` value replaced."""


def to_json_value(value: Any) -> Any:
    """Tuples become lists, mappings plain dicts and schedules their config, recursively."""
    if isinstance(value, DilationSchedule):
        return to_json_value(value.to_config())
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_json_value(item) for item in value]
    return value


def model_config(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": name, **arguments}`` with JSON-friendly values.

    Builders name every argument of their signature in ``arguments`` (never
    ``locals()``: renaming a local would change saved configs), so the config holds every
    resolved argument and ``build_model(**config)`` rebuilds the same network;
    ``tests/models/test_registry.py`` checks the keys against each signature.
    """
    return {"name": name, **{key: to_json_value(value) for key, value in arguments.items()}}


def fold_legacy_schedule(options: Mapping[str, Any], default: Any = None) -> dict[str, Any]:
    """Options with atrous 0.1's ``multi_grid`` / ``hdc_rates`` folded into ``dilation_schedule``.

    Configs saved by atrous 0.1 (shipped weights, run folders, checkpoints) carry the
    schedule as three loose options; the rates only ever applied to their own rule, so
    ``{"dilation_schedule": "hdc", "hdc_rates": [1, 2, 5]}`` becomes ``"hdc:1,2,5"`` and
    the unused ones are dropped. ``default`` is the builder's own default schedule, used
    when ``dilation_schedule`` is absent. Options without the old keys come back as they
    were.
    """
    if not any(key in options for key in LEGACY_SCHEDULE_OPTIONS):
        return dict(options)
    folded = dict(options)
    multi_grid = folded.pop("multi_grid", None)
    hdc_rates = folded.pop("hdc_rates", None)
    rule = folded.get("dilation_schedule", default)
    if rule == "multigrid" and multi_grid is not None:
        rule = DilationSchedule.multigrid(multi_grid)
    elif rule == "hdc" and hdc_rates is not None:
        rule = DilationSchedule.hdc(hdc_rates)
    folded["dilation_schedule"] = DilationSchedule.parse(rule).to_config()
    return folded
