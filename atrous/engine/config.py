"""Training configuration: frozen dataclasses, YAML files, dotted command-line overrides.

YAML is only the serialisation of ``Config``; every field has a type and a
default, so a typo (``optim.lr=O.01``, ``optim.learning_rate=...``) is an error that
lists the valid choices instead of a silently ignored key::

    config = load_config("configs/synthetic_quick.yaml", ["optim.lr=0.02", "schedule.epochs=3"])
    save_config(config, "runs/x/config.yaml")   # the resolved config, to reproduce the run

Sections: ``model`` (registry name + builder options, optional pretrained folder),
``data``, ``optim``, ``schedule``, ``loss``, ``train`` (seed, precision, device, ...)
and ``eval``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from atrous.engine.schema import (
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from atrous.engine.validate import validate_config


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list ({_type_name(annotation)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)}")
        item_types = [args[0]] * len(value) if (origin is list or args[-1] is Ellipsis) else args
        items = [_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {annotation!r}")


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[f'{where}{k}' for k in unknown]}; valid keys in "
            f"{where.rstrip('.') or 'the top level'}: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, f"{where}{name}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict (tuples as lists) for YAML/JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.02"`` -> ``(["optim", "lr"], 0.02)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def config_from_dict(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a ``Config`` from a nested dict plus dotted overrides, type-checked."""
    merged = dict(values or {})
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    config = _build(Config, merged, "")
    _check_splits(config.data)
    validate_config(config)
    return config


def _check_splits(data: DataConfig) -> None:
    """Validate CamVid split expressions at the door, not an hour later in the trainer."""
    if data.format != "camvid":
        return
    from atrous.data.splits import SplitError, SplitOverlapError, parse_split

    for key in ("train_split", "val_split"):
        if getattr(data, key) is None:
            continue
        try:
            parse_split(getattr(data, key))
        except SplitError as exc:
            raise ConfigError(f"data.{key}: {exc}") from None
    if not Path(data.root).is_dir() or data.val_split is None:
        return  # checked again when the datasets are built, with the file named
    from atrous.data import check_split_pair

    try:
        check_split_pair(
            data.format,
            data.root,
            data.train_split,
            data.val_split,
            allow_overlap=data.allow_split_overlap,
        )
    except SplitError as exc:
        how = ": data.allow_split_overlap=true" if isinstance(exc, SplitOverlapError) else ""
        raise ConfigError(
            f"data.train_split={data.train_split!r}, data.val_split={data.val_split!r}: {exc}{how}"
        ) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides.

    Example:
        ```python
        from atrous.engine import load_config

        # A recipe of configs/, with dotted overrides checked against the config's types.
        config = load_config("configs/camvid_cpu.yaml", ["optim.lr=0.005", "model.options.output_stride=8"])
        print(config.model.name, config.model.options, config.optim.lr)
        ```
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded or {}
    try:
        return config_from_dict(values, overrides)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def replace(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of ``config`` with dotted overrides applied (type-checked)."""
    return config_from_dict(config_to_dict(config), overrides)


def config_keys() -> list[tuple[str, str, Any]]:
    """Every dotted key ``--set`` accepts, with its type and default, read from the
    dataclasses of ``atrous.engine.schema`` so the list cannot drift from what ``load_config`` checks.

    ``model.options.*`` keys are the chosen builder's keyword arguments (see
    ``help(atrous.models.<name>)``), so they are listed as one ``model.options`` entry.
    """
    keys: list[tuple[str, str, Any]] = []
    for section in dataclasses.fields(Config):
        section_default = section.default_factory()  # type: ignore[misc]
        for item in dataclasses.fields(type(section_default)):
            value = getattr(section_default, item.name)
            if isinstance(value, tuple):
                value = list(value)
            keys.append((f"{section.name}.{item.name}", _type_name(item.type), value))
    return keys


__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_keys",
    "config_to_dict",
    "load_config",
    "parse_override",
    "replace",
    "save_config",
]
