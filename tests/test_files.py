"""A full or read-only disk during a checkpoint, a prediction or a model save: the
previous files stay whole, no temporary file is left, and the message says what
happened (simulated by fault injection at the write)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.engine import load_config, train
from atrous.engine.checkpoint import latest_checkpoint, load_checkpoint
from atrous.files import atomic_write_bytes
from atrous.models import build_model, load_pretrained, save_pretrained
from tests.data.helpers import write_folder_dataset


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class FullDiskAfter:
    """Makes the ``n``-th call of the wrapped writer fail as a full disk does (after
    writing half the data: what a real ENOSPC leaves)."""

    def __init__(self, wrapped, n: int) -> None:
        self.wrapped, self.n, self.calls = wrapped, n, 0

    def __call__(self, path, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.n:
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return self.wrapped(path, *args, **kwargs)


def test_atomic_write_keeps_the_old_file_and_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")

    def fail(temporary: Path) -> None:
        temporary.write_bytes(b"ne")
        raise OSError(errno.ENOSPC, "No space left on device", str(temporary))

    from atrous.files import atomic_write

    with pytest.raises(OSError) as caught:
        atomic_write(target, fail)
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    # The mode a plain open() gives under this umask, not mkstemp's private 0600.
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_checkpoint_on_a_full_disk_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import atrous.engine.checkpoint as checkpoint

    root = write_folder_dataset(tmp_path / "data", splits={"train": 4, "val": 1}, size=(16, 16))
    overrides = [
        "data.crop_size=[16, 16]", "data.batch_size=2", "model.options={width: 4, rates: [1, 2]}",
        "train.device=cpu", "schedule.epochs=3", "eval.every=100",
    ]  # fmt: skip
    # Each checkpoint writes two files; the 3rd write is the 2nd checkpoint's tensors.
    monkeypatch.setattr(
        checkpoint, "atomic_write_bytes", FullDiskAfter(checkpoint.atomic_write_bytes, 3)
    )
    args = ["train", "--data.root", str(root), "--out", str(tmp_path / "run"), "--no-progress"]
    code = main([*args, *[a for item in overrides for a in ("--set", item)]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "checkpoints" in err
    # The epoch-1 checkpoint is whole and loads.
    from atrous.engine.build import make_optimizer

    path = latest_checkpoint(tmp_path / "run" / "checkpoints")
    config = load_config(None, [f"data.root={root}", *overrides])
    model = build_model("dilated_net", num_classes=3, width=4, rates=(1, 2))
    document = load_checkpoint(path, model=model, optimizer=make_optimizer(config, model))
    assert document["epoch"] == 1
    # And the run resumes from it once there is space again.
    monkeypatch.undo()
    assert train(config, tmp_path / "run", resume=True, progress=False).status == "completed"


def test_a_prediction_on_a_full_disk_keeps_the_masks_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    model = save_pretrained(
        build_model("dilated_net", num_classes=3, width=4, rates=(1, 2)), tmp_path / "m"
    )
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(images / f"{name}.png")
    out = tmp_path / "out"
    original = Image.Image.save
    calls = {"n": 0}

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device", str(fp))
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    code = main(
        ["predict", str(images), "--model", str(model), "--out", str(out), "--batch-size", "1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"No space left on device: {out / 'b.png'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # whole, no temporary files
    assert Image.open(out / "a.png").size == (20, 16)


def test_a_model_save_on_a_read_only_disk_keeps_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import atrous.models.pretrained as pretrained

    folder = save_pretrained(
        build_model("dilated_net", num_classes=3, width=4, rates=(1, 2)), tmp_path / "m"
    )
    before = _files(folder)

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(pretrained, "save_file", read_only)
    with pytest.raises(OSError, match="Read-only file system") as caught:
        save_pretrained(build_model("dilated_net", num_classes=3, width=8), folder)
    assert caught.value.filename == str(folder / "model.safetensors")
    assert _files(folder) == before
    assert load_pretrained(folder).config["width"] == 4


def test_the_user_cache_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atrous.files import user_cache_dir

    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "a"))
    assert user_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ATROUS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "atrous"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "atrous"
