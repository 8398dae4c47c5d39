"""Model configs: the resolved keyword arguments of a builder, JSON-ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def to_json_value(value: Any) -> Any:
    """Tuples become lists and mappings plain dicts, recursively, so json.dumps works."""
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_json_value(item) for item in value]
    return value


def model_config(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": name, **arguments}`` with JSON-friendly values.

    Builders call it with ``locals()`` as their first statement, so the config holds
    every resolved argument and ``build_model(**config)`` rebuilds the same network.
    """
    return {"name": name, **{key: to_json_value(value) for key, value in arguments.items()}}
