"""Config: YAML + dotted overrides, type-checked, unknown keys listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrous.engine import Config, ConfigError, load_config, save_config

REPO = Path(__file__).resolve().parents[2]


def test_overrides_are_typed_and_applied() -> None:
    config = load_config(
        None,
        ["optim.lr=0.02", "data.crop_size=[32, 48]", "model.options.width=8", "train.grad_clip=1"],
    )
    assert config.optim.lr == 0.02 and isinstance(config.optim.lr, float)
    assert config.data.crop_size == (32, 48)
    assert config.model.options == {"width": 8}
    assert config.train.grad_clip == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=fast", r"optim\.lr: .*'fast'"),
        ("optim.learning_rate=0.1", r"unknown key.*optim\.learning_rate.*valid keys.*'lr'"),
        ("data.crop_size=[1, 2, 3]", r"expected 2 values"),
        ("optim.name=adam", r"not one of \['sgd', 'adamw'\]"),
        ("schedule.epochs=2.5", r"expected an integer"),
        ("trian.seed=1", r"unknown key.*trian.*valid keys.*'train'"),
        ("optim.lr", r"section\.key=value"),
    ],
)
def test_bad_overrides_say_what_is_valid(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["loss.class_weights=[1, 2.5]", "eval.scales=[0.5, 1.0]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert Config() == load_config(None)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    load_config(path)


def test_every_key_says_what_it_does() -> None:
    from atrous.engine.config import config_keys
    from atrous.engine.schema import KEY_EXAMPLES, KEY_HELP

    keys = [key for key, _, _ in config_keys()]
    assert sorted(KEY_HELP) == sorted(keys)
    assert all(len(text) > 10 for text in KEY_HELP.values())
    assert set(KEY_EXAMPLES) <= set(keys)
