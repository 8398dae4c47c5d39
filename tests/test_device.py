"""``atrous.device.resolve_device``: the one place where ``device="auto"`` is decided."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.device import resolve_device


def test_auto_follows_what_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("AUTO") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_explicit_devices_are_checked_now(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device 'gpu0' is not a device; expected auto, cpu"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda' asked for CUDA but torch sees no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist: torch sees 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("command", ["eval", "adjust-prior"])
def test_commands_refuse_a_device_that_does_not_exist(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from atrous.cli import main

    status = main([command, "--model", "m", "--data.root", str(tmp_path), "--device", "gpu0"])
    assert status == 2
    assert "error: device 'gpu0' is not a device; expected auto, cpu" in capsys.readouterr().err
