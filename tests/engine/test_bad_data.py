"""Training and bad data: every sample checked before step 1 (all problems at once, a
cache for the second start), ``data.bad_samples=skip``, and a file that goes bad during
the run: checkpoint, clear message, and a resume that ends where an uninterrupted run
on the fixed data ends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from atrous.cli import main
from atrous.data import DataError, SegmentationDataset
from atrous.engine import load_config, train
from atrous.engine.precheck import cache_path, check_samples
from tests.data.helpers import dds_with_unimplemented_format, write_folder_dataset

TINY = [
    "data.crop_size=[16, 16]",
    "data.batch_size=2",
    "model.options={width: 4, rates: [1, 2]}",
    "loss.aux_weight=0",
    "train.device=cpu",
    "schedule.epochs=2",
    "eval.every=1",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "data", splits={"train": 8, "val": 2}, size=(20, 18))


def _corrupt(root: Path) -> list[str]:
    """Two bad training files: a DDS-like decoder failure and a truncated PNG."""
    images = sorted((root / "images" / "train").glob("*.png"))
    images[2].write_bytes(dds_with_unimplemented_format())
    images[5].write_bytes(images[5].read_bytes()[:60])
    return [images[2].name, images[5].name]


def test_every_bad_sample_is_listed_before_the_first_step(root: Path, tmp_path: Path) -> None:
    names = _corrupt(root)
    config = load_config(None, [f"data.root={root}", *TINY])
    with pytest.raises(DataError) as caught:
        train(config, tmp_path / "run", progress=False)
    message = str(caught.value)
    assert "2 bad sample(s)" in message and "nothing was trained" in message
    assert all(name in message for name in names)
    assert "does not implement (Unimplemented DXGI format 93)" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_cli_says_it_without_a_traceback(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _corrupt(root)
    args = ["train", "--data.root", str(root), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, *[a for item in TINY for a in ("--set", item)]]) == 2
    err = capsys.readouterr().err
    assert "2 bad sample(s)" in err and "Traceback" not in err


def test_known_good_samples_are_not_read_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atrous.data import build_dataset

    dataset = build_dataset("folder", root, split="train")
    reads = []
    original = SegmentationDataset.load

    def counting(self, index):
        reads.append(index)
        return original(self, index)

    monkeypatch.setattr(SegmentationDataset, "load", counting)
    assert check_samples(dataset) == []
    assert len(reads) == 8 and cache_path().is_file()
    assert check_samples(dataset) == []
    assert len(reads) == 8  # all eight cached
    # A file rewritten since is checked again, and found bad.
    bad = dataset.samples[3][0]
    bad.write_bytes(bad.read_bytes()[:50])
    problems = check_samples(dataset)
    assert [p.index for p in problems] == [3] and len(reads) == 9


def test_skip_trains_without_the_bad_samples(root: Path, tmp_path: Path) -> None:
    names = _corrupt(root)
    config = load_config(None, [f"data.root={root}", *TINY, "data.bad_samples=skip"])
    result = train(config, tmp_path / "run", progress=False)
    assert result.status == "completed"
    listed = (tmp_path / "run" / "skipped_samples.txt").read_text()
    assert all(name in listed for name in names)


def test_a_file_that_goes_bad_mid_run_stops_with_a_checkpoint_and_resumes_exactly(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(None, [f"data.root={root}", *TINY])
    reference = train(config, tmp_path / "reference", progress=False).model
    # A sample turns unreadable after the check (which the reference run's cache makes
    # read nothing): the 15th read, in epoch 2's third step (epoch 1 read 8 training and
    # 2 validation samples), fails as a truncated file would.
    original = SegmentationDataset.load
    calls = {"n": 0}

    def flaky(self, index):
        calls["n"] += 1
        if calls["n"] == 15:
            raise DataError(f"{self.samples[index][0]}: cannot read image: truncated")
        return original(self, index)

    monkeypatch.setattr(SegmentationDataset, "load", flaky)
    with pytest.raises(DataError) as caught:
        train(config, tmp_path / "run", progress=False)
    message = str(caught.value)
    assert "truncated" in message and "--resume" in message and "saved" in message
    assert "training stopped at epoch 2, step 2" in message
    assert list((tmp_path / "run" / "checkpoints").glob("*.json"))
    monkeypatch.setattr(SegmentationDataset, "load", original)  # the file is fixed
    resumed = train(config, tmp_path / "run", resume=True, progress=False).model
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_a_bad_upload_in_the_dataset_reader_names_the_file(root: Path, tmp_path: Path) -> None:
    from atrous.data import build_dataset

    target = tmp_path / "copy"
    shutil.copytree(root, target)
    image = sorted((target / "images" / "val").glob("*.png"))[0]
    image.write_bytes(dds_with_unimplemented_format())
    dataset = build_dataset("folder", target, split="val")
    with pytest.raises(DataError, match=image.name):
        dataset[0]


def test_eval_lists_every_bad_file_and_reports_no_metric(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from atrous.models import build_model, save_pretrained

    model = save_pretrained(
        build_model("dilated_net", num_classes=3, width=4, rates=(1, 2)), tmp_path / "m"
    )
    images = sorted((root / "images" / "val").glob("*.png"))
    images[0].write_bytes(dds_with_unimplemented_format())
    images[1].write_bytes(images[1].read_bytes()[:70])
    code = main(["eval", "--model", str(model), "--data.root", str(root), "--split", "val"])
    captured = capsys.readouterr()
    assert code == 2
    assert images[0].name in captured.err and images[1].name in captured.err
    assert "no metric reported" in captured.err and "Traceback" not in captured.err
    assert "miou" not in captured.out
