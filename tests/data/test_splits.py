"""Splits by drive and by time from CamVid frame names: counts, disjointness, folds, errors.

Most tests run on a miniature CamVid written to tmp_path (tests.data.helpers); those
marked ``camvid`` check the real SegNet split and skip when it is absent.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from atrous.cli import main
from atrous.cli.eval import _frames_trained_on
from atrous.data import (
    CamVidDataset,
    SplitError,
    SplitOverlapError,
    build_dataset,
    camvid_drive_folds,
    camvid_drives,
    camvid_pool,
    camvid_split_names,
    check_split_pair,
    parse_split,
    resolve_split,
)
from atrous.data.splits import FrameName, drive_folds, parse_frame_name
from atrous.engine import ConfigError
from atrous.engine.config import config_from_dict
from tests.data.helpers import FAKE_CAMVID_FRAMES, write_camvid_dataset


@pytest.fixture
def camvid(tmp_path: Path) -> Path:
    return write_camvid_dataset(tmp_path / "camvid")


def _stems(root: Path, split: str) -> list[str]:
    return [image.stem for image, _ in CamVidDataset(root, split=split).samples]


def _written(prefix: str = "", splits: tuple[str, ...] = ("train", "val")) -> list[str]:
    return [s for split in splits for s in FAKE_CAMVID_FRAMES[split] if s.startswith(prefix)]


# --- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0001TP_006690.png", FrameName("0001TP", 6690)),
        ("0006R0_f00930.png", FrameName("0006R0", 930)),
        ("/x/val/0016E5_07959.png", FrameName("0016E5", 7959)),
        ("Seq05VD_f05100.png", FrameName("Seq05VD", 5100)),
    ],
)
def test_frame_names_give_drive_and_number(name: str, expected: FrameName) -> None:
    assert parse_frame_name(name) == expected


def test_frame_name_without_drive_is_an_error_naming_the_file() -> None:
    with pytest.raises(SplitError, match=r"street\.png.*DRIVE_FRAME"):
        parse_frame_name("/data/street.png")


@pytest.mark.parametrize(
    "text",
    [
        "train",
        "drive:0006R0",
        "drive:0001TP,0006R0",
        "train+val-drive:0006R0",
        "frames:0016E5:7000..",
        "frames:0016E5:..7000",
        "frames:0016E5:390..7000",
        "train-frames:0016E5:7000..+val",
    ],
)
def test_specs_parse_and_print_back(text: str) -> None:
    spec = parse_split(text)
    assert "".join(f"{sign}{term}" for sign, term in spec.terms).lstrip("+") == text
    assert spec.is_plain == (text == "train")


def test_spaces_around_operators_and_letter_prefixed_frame_numbers() -> None:
    spec = parse_split(" train + val - frames:0006R0:f00960.. ")
    assert [(sign, str(term)) for sign, term in spec.terms] == [
        ("+", "train"),
        ("+", "val"),
        ("-", "frames:0006R0:960.."),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("train+", "'\\+' has no term after it"),
        ("-drive:0006R0", "starts with an operator"),
        ("train++val", "'\\+' has no term after it"),
        ("lane:0006R0", "unknown term kind 'lane'"),
        ("drive:", "expected drive:DRIVE"),
        ("frames:0016E5", "expected frames:DRIVE:\\[FIRST\\]..\\[END\\]"),
        ("frames:0016E5:7000", "expected frames:DRIVE"),
        ("frames:0016E5:7k..", "'7k' is not a number"),
        ("frames:0016E5:7000..390", "empty range"),
        ("train/a", "not a split name"),
    ],
)
def test_malformed_specs_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        parse_split(text)


# --- resolving on a miniature CamVid --------------------------------------------------


def test_plain_names_read_the_list_files_in_order(camvid: Path) -> None:
    assert camvid_split_names(camvid) == ["train", "val"]
    assert _stems(camvid, "train") == FAKE_CAMVID_FRAMES["train"]
    assert _stems(camvid, "val") == FAKE_CAMVID_FRAMES["val"]


def test_drive_summary_counts_frames_per_drive_and_split(camvid: Path) -> None:
    drives = {d.drive: d for d in camvid_drives(camvid)}
    assert list(drives) == ["0001TP", "0006R0", "0016E5"]
    assert {d: s.frames for d, s in drives.items()} == {"0001TP": 3, "0006R0": 2, "0016E5": 6}
    assert drives["0016E5"].splits == {"train": 4, "val": 2}
    assert (drives["0006R0"].first_frame, drives["0006R0"].last_frame) == (930, 960)
    assert (drives["0016E5"].first_frame, drives["0016E5"].last_frame) == (390, 7989)


def test_drive_split_pools_every_split(camvid: Path) -> None:
    assert _stems(camvid, "drive:0016E5") == _written("0016E5")
    assert _stems(camvid, "drive:0001TP,0006R0") == _written("0001TP") + _written("0006R0")


def test_held_out_drive_and_its_training_split_partition_the_pool(camvid: Path) -> None:
    train = _stems(camvid, "train+val-drive:0006R0")
    held_out = _stems(camvid, "drive:0006R0")
    assert held_out == ["0006R0_f00930", "0006R0_f00960"]
    assert not set(train) & set(held_out)
    assert not any(s.startswith("0006R0") for s in train)
    assert sorted(train + held_out) == sorted(_written())
    assert len(_stems(camvid, "train+val")) == 11


def test_time_block_and_its_complement_partition_a_drive(camvid: Path) -> None:
    late = _stems(camvid, "frames:0016E5:7959..")
    early = _stems(camvid, "frames:0016E5:..7959")
    assert late == ["0016E5_07980", "0016E5_07959", "0016E5_07989"]  # train then val
    assert early == ["0016E5_00390", "0016E5_00420", "0016E5_07950"]
    assert sorted(late + early) == sorted(_written("0016E5"))
    assert _stems(camvid, "frames:0016E5:420..7951") == ["0016E5_00420", "0016E5_07950"]
    train_without_block = _stems(camvid, "train+val-frames:0016E5:7959..")
    assert not set(train_without_block) & set(late)


def test_union_keeps_each_frame_once(camvid: Path) -> None:
    assert _stems(camvid, "val+drive:0016E5") == FAKE_CAMVID_FRAMES["val"] + [
        s for s in _written("0016E5") if s not in FAKE_CAMVID_FRAMES["val"]
    ]


def test_expression_dataset_loads_labelled_samples(camvid: Path) -> None:
    dataset = build_dataset("camvid", camvid, split="drive:0006R0")
    image, mask = dataset[1]
    assert image.shape == (3, 4, 6) and mask.shape == (4, 6)
    assert set(mask.unique().tolist()) <= set(range(11)) | {255}
    assert dataset.split == "drive:0006R0"


def test_leave_one_drive_out_folds_partition_the_pool(camvid: Path) -> None:
    folds = camvid_drive_folds(camvid)
    assert [f.drive for f in folds] == ["0001TP", "0006R0", "0016E5"]
    assert folds[1].train_split == "train+val-drive:0006R0"
    assert folds[1].val_split == "drive:0006R0"
    validated: Counter[str] = Counter()
    for fold in folds:
        train, val = _stems(camvid, fold.train_split), _stems(camvid, fold.val_split)
        assert not set(train) & set(val), fold
        assert sorted(train + val) == sorted(_written()), fold
        assert {s.split("_")[0] for s in val} == {fold.drive}
        validated.update(val)
    assert sorted(validated) == sorted(_written()) and set(validated.values()) == {1}


def test_folds_exclude_a_test_split_outside_the_pool(tmp_path: Path) -> None:
    frames = {**FAKE_CAMVID_FRAMES, "test": ["0001TP_008550", "Seq05VD_f00000"]}
    root = write_camvid_dataset(tmp_path / "camvid", frames)
    folds = camvid_drive_folds(root)
    assert [f.drive for f in folds] == ["0001TP", "0006R0", "0016E5"]  # Seq05VD is test only
    assert folds[0].val_split == "train+val-drive:0006R0,0016E5"
    for fold in folds:
        for spec in (fold.train_split, fold.val_split):
            assert not set(_stems(root, spec)) & set(frames["test"]), spec
    assert _stems(root, folds[0].val_split) == _written("0001TP")
    assert "0001TP_008550" in _stems(root, "drive:0001TP")  # drive: reads every split
    assert "0001TP_008550" not in _stems(root, "drive:0001TP-test")


def test_drive_folds_need_two_drives() -> None:
    with pytest.raises(SplitError, match="need at least 2"):
        drive_folds(["0016E5"])


# --- errors ---------------------------------------------------------------------------


def test_unknown_split_lists_splits_and_drive_forms(camvid: Path) -> None:
    with pytest.raises(SplitError) as info:
        CamVidDataset(camvid, split="test")
    message = str(info.value)
    assert "no split 'test'" in message and "splits on disk: train, val" in message
    for drive in ("0001TP (3 frames)", "0006R0 (2 frames)", "0016E5 (6 frames)", "drive:0001TP"):
        assert drive in message


def test_unknown_drive_lists_the_drives(camvid: Path) -> None:
    with pytest.raises(SplitError, match=r"no drive '0006RO'.*0006R0 \(2 frames\)"):
        CamVidDataset(camvid, split="train+val-drive:0006RO")


def test_empty_results_are_errors(camvid: Path) -> None:
    with pytest.raises(SplitError, match=r"selects no frame; drive 0016E5 has frames 390..7989"):
        CamVidDataset(camvid, split="frames:0016E5:9000..")
    with pytest.raises(SplitError, match="'val-drive:0016E5' selects no frame"):
        CamVidDataset(camvid, split="val-drive:0016E5")


def test_drive_split_on_names_without_drive_names_the_file(tmp_path: Path) -> None:
    root = write_camvid_dataset(tmp_path / "camvid", {"train": ["street"]})
    assert len(CamVidDataset(root, split="train")) == 1  # plain names need no drive
    with pytest.raises(SplitError, match=r"street\.png.*DRIVE_FRAME"):
        CamVidDataset(root, split="drive:0006R0")


def test_overlapping_train_and_val_are_refused_unless_allowed(camvid: Path) -> None:
    assert check_split_pair("camvid", camvid, "train+val-drive:0006R0", "drive:0006R0") == (9, 2)
    with pytest.raises(SplitOverlapError, match=r"share 2 frames \(0006R0_f00930.png"):
        check_split_pair("camvid", camvid, "train", "drive:0006R0")
    with pytest.raises(SplitOverlapError, match="'train\\+val-val'"):
        check_split_pair("camvid", camvid, "train+val", "val")
    assert check_split_pair("camvid", camvid, "train+val", "val", allow_overlap=True) == (11, 2)


def _config(root: Path, **data: object) -> dict[str, object]:
    return {"data": {"format": "camvid", "root": str(root), **data}}


def test_config_load_checks_splits_against_the_data(camvid: Path) -> None:
    recipe = _config(camvid, train_split="train+val-drive:0006R0", val_split="drive:0006R0")
    config = config_from_dict(recipe)
    assert (config.data.train_split, config.data.val_split) == (
        "train+val-drive:0006R0",
        "drive:0006R0",
    )
    with pytest.raises(ConfigError, match=r"no drive '0006RX'.*0006R0"):
        config_from_dict(_config(camvid, val_split="drive:0006RX"))
    with pytest.raises(ConfigError, match="selects no frame"):
        config_from_dict(_config(camvid, val_split="frames:0001TP:8550.."))
    with pytest.raises(ConfigError, match=r"share 2 frames.*data.allow_split_overlap=true"):
        config_from_dict(_config(camvid, train_split="train+val"))
    final = config_from_dict(
        _config(camvid, train_split="train+val"), ["data.allow_split_overlap=true"]
    )
    assert final.data.allow_split_overlap


def test_config_syntax_is_checked_even_without_the_data(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert config_from_dict(_config(missing, val_split="drive:0006R0")).data.val_split
    with pytest.raises(ConfigError, match=r"data.val_split: .*empty range"):
        config_from_dict(_config(missing, val_split="frames:0016E5:9..1"))


def test_other_formats_keep_plain_split_names(tmp_path: Path) -> None:
    config = config_from_dict({"data": {"format": "folder", "train_split": "train-a+b"}})
    assert config.data.train_split == "train-a+b"


# --- command line ---------------------------------------------------------------------


def test_data_check_takes_a_drive_split(camvid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["data", "check", str(camvid), "--format", "camvid", "--split", "drive:0006R0"]) == 0
    )
    out = capsys.readouterr().out
    assert "0016E5" in out and "train 4, val 2" in out  # drives table
    assert "== drive:0006R0: 2 samples, 0 problems" in out


def test_eval_unknown_split_lists_what_exists(
    camvid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--model", "camvid", "--data.root", str(camvid), "--split", "test"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no split 'test'" in err and "train, val" in err and "drive:0001TP" in err


class _TrainedOn:
    def __init__(self, train_split: str) -> None:
        self.metadata = {"config": {"data": {"format": "camvid", "train_split": train_split}}}


def test_eval_counts_frames_the_model_trained_on(camvid: Path) -> None:
    val = build_dataset("camvid", camvid, split="val")
    assert _frames_trained_on(_TrainedOn("train+val"), "camvid", str(camvid), val) == (
        2,
        "train+val",
    )
    assert _frames_trained_on(_TrainedOn("train"), "camvid", str(camvid), val) is None
    held_out = build_dataset("camvid", camvid, split="drive:0006R0")
    assert (
        _frames_trained_on(_TrainedOn("train+val-drive:0006R0"), "camvid", str(camvid), held_out)
        is None
    )
    assert _frames_trained_on(_TrainedOn("drive:XYZ"), "camvid", str(camvid), val) is None


# --- the real CamVid (SegNet split) ----------------------------------------------------


@pytest.mark.camvid
def test_real_camvid_drives(camvid_root: Path) -> None:
    drives = {d.drive: d for d in camvid_drives(camvid_root)}
    assert {d: s.splits for d, s in drives.items()} == {
        "0001TP": {"train": 62},
        "0006R0": {"train": 101},
        "0016E5": {"train": 204, "val": 101},
    }
    assert drives["0001TP"].last_frame < 8550  # test takes 0001TP from frame 8550 on


@pytest.mark.camvid
def test_real_camvid_selection_recipe(camvid_root: Path) -> None:
    pool = camvid_pool(camvid_root)
    train = resolve_split("train+val-drive:0006R0", pool)
    held_out = resolve_split("drive:0006R0", pool)
    everything = resolve_split("train+val", pool)
    assert (len(train), len(held_out), len(everything)) == (367, 101, 468)
    names = {Path(s[0]).name for s in train}
    assert not names & {Path(s[0]).name for s in held_out}
    assert names | {Path(s[0]).name for s in held_out} == {Path(s[0]).name for s in everything}
    assert check_split_pair("camvid", camvid_root, "train+val-drive:0006R0", "drive:0006R0") == (
        367,
        101,
    )


@pytest.mark.camvid
def test_real_camvid_folds_partition_train_and_val(camvid_root: Path) -> None:
    pool = camvid_pool(camvid_root)
    sizes = {}
    validated: Counter[str] = Counter()
    for fold in camvid_drive_folds(camvid_root):
        train = {Path(s[0]).name for s in resolve_split(fold.train_split, pool)}
        val = {Path(s[0]).name for s in resolve_split(fold.val_split, pool)}
        assert not train & val and len(train | val) == 468
        sizes[fold.drive] = (len(train), len(val))
        validated.update(val)
    assert sizes == {"0001TP": (406, 62), "0006R0": (367, 101), "0016E5": (163, 305)}
    assert len(validated) == 468 and set(validated.values()) == {1}


@pytest.mark.camvid
def test_real_camvid_has_no_test_frames(camvid_root: Path) -> None:
    with pytest.raises(SplitError, match=r"no split 'test'.*splits on disk: train, val"):
        CamVidDataset(camvid_root, split="test")
    with pytest.raises(SplitError, match=r"selects no frame; drive 0001TP has frames 6690\.\.8520"):
        CamVidDataset(camvid_root, split="frames:0001TP:8550..")
