"""Video in, video out: ``atrous predict clip.mp4`` against the same model on the
decoded frames, frame selection, per-frame areas, and clips that cannot be read."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from atrous.cli import main
from atrous.infer import Predictor
from atrous.models import build_model, load_pretrained, save_pretrained

av = pytest.importorskip("av")

PALETTE = [(0, 0, 255), (128, 128, 128), (255, 0, 0)]


def write_clip(
    path: Path, frames: int = 12, size: tuple[int, int] = (48, 64), fps: int = 10
) -> list[np.ndarray]:
    """A lossless clip (FFV1) of moving blocks; returns its frames as decoded RGB."""
    rng = np.random.default_rng(0)
    images = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(fps))
        stream.height, stream.width = size
        stream.pix_fmt = "bgr0"
        for index in range(frames):
            image = np.full((*size, 3), 40, dtype=np.uint8)
            image[:, (index * 4) % size[1] :][:, :16] = rng.integers(0, 256, 3, dtype=np.uint8)
            images.append(image)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return images


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=3, width=8, rates=(1, 2, 4))
    return save_pretrained(
        model.eval(), tmp_path_factory.mktemp("m") / "tiny", class_names=["sky", "road", "car"],
        palette=PALETTE,
    )  # fmt: skip


def test_mask_video_equals_predicting_the_frames(model_dir: Path, tmp_path: Path) -> None:
    from atrous.infer.video import read_mask_video

    clip = tmp_path / "drive.mkv"
    frames = write_clip(clip)
    out = tmp_path / "out"
    table = tmp_path / "areas.csv"
    code = main(
        ["predict", str(clip), "--model", str(model_dir), "--out", str(out), "--overlay",
         "--frames-out", "--csv", str(table), "--batch-size", "4"]
    )  # fmt: skip
    assert code == 0
    predictor = Predictor(load_pretrained(model_dir))
    expected = [predictor.predict(frame) for frame in frames]
    got = list(read_mask_video(out / "drive_mask.mkv", PALETTE))
    assert len(got) == len(expected) == 12
    for mine, reference in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, reference)
    with av.open(str(out / "drive_overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(10)
        assert sum(1 for _ in container.decode(stream)) == 12
    assert len(list((out / "drive_frames").glob("*.png"))) == 12
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 * 3
    assert rows[3]["frame"] == "1" and float(rows[3]["time_s"]) == pytest.approx(0.1)


def test_every_start_and_end_select_frames(model_dir: Path, tmp_path: Path) -> None:
    clip = tmp_path / "drive.mkv"
    write_clip(clip, frames=20)
    out = tmp_path / "out"
    argv = ["predict", str(clip), "--model", str(model_dir), "--out", str(out), "--frames-out"]
    assert main([*argv, "--every", "3", "--start", "0.5", "--end", "1.5"]) == 0
    names = sorted(p.stem for p in (out / "drive_frames").glob("*.png"))
    assert names == ["000006", "000009", "000012"]  # 0.5 s <= t < 1.5 s, every 3rd frame
    with av.open(str(out / "drive_mask.mkv")) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(10 / 3)


def test_clips_that_cannot_be_read_are_named_and_the_rest_goes_on(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    good = write_clip(folder / "a_good.mkv", frames=6)
    (folder / "b_garbage.mp4").write_bytes(b"this is not a video" * 100)
    with av.open(str(folder / "c_audio_only.mkv"), mode="w") as container:  # no video stream
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    whole = folder / "d_whole.mkv"
    write_clip(whole, frames=30, size=(96, 128))
    data = whole.read_bytes()
    (folder / "d_cut.mkv").write_bytes(data[: len(data) // 2])
    whole.unlink()
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--model", str(model_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "b_garbage.mp4: cannot open as a video" in err
    assert "c_audio_only.mkv: has no video stream" in err
    assert "d_cut.mkv" in err and "ends early" in err
    from atrous.infer.video import read_mask_video

    assert len(list(read_mask_video(out / "a_good_mask.mkv", PALETTE))) == len(good)
    # The frames segmented before the cut are a valid video.
    assert 0 < len(list(read_mask_video(out / "d_cut_mask.mkv", PALETTE))) < 30
