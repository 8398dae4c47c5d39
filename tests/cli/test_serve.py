"""``atrous serve``'s flags come from ServeConfig; a model that cannot load fails the command."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from atrous.cli import main
from atrous.serve import ServeConfig
from atrous.serve.flags import add_config_arguments, attribute_help, config_from_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p


def test_every_config_field_has_a_documented_flag() -> None:
    p = parser()
    helps = attribute_help(ServeConfig)
    options = {a.dest: a for a in p._actions}
    for field in dataclasses.fields(ServeConfig):
        assert field.name in options, field.name
        assert f"--{field.name.replace('_', '-')}" in options[field.name].option_strings
        assert len(helps[field.name]) >= 8, field.name  # from the docstring
        assert options[field.name].help.startswith(helps[field.name][:8])
    defaults = config_from_args(p.parse_args(["--model", "m"]))
    assert defaults == ServeConfig(model="m")


def test_flags_are_typed_and_old_spellings_still_work() -> None:
    args = parser().parse_args(
        [
            "--model", "m",
            "--max-queue", "3",
            "--request-timeout", "2.5",
            "--max-batch-size", "2",
            "--allowed-hosts", "seg.lan", "10.0.0.5",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.max_queued_requests == 3
    assert config.request_timeout_s == 2.5
    assert config.max_batch_size == 2
    assert config.allowed_hosts == ("seg.lan", "10.0.0.5")
    with pytest.raises(SystemExit):
        parser().parse_args(["--model", "m", "--port", "eighty"])


def test_a_model_that_cannot_load_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    status = main(["serve", "--model", str(missing), "--port", "1"])
    assert status == 1
    err = capsys.readouterr().err
    assert "cannot load model" in err and "nonexistent" in err


def test_an_invalid_setting_fails_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "m", "--max-concurrent-inferences", "0"]) == 2
    assert "max_concurrent_inferences must be > 0" in capsys.readouterr().err
