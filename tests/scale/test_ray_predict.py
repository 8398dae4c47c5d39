"""Batch prediction on Ray Data against the local ``atrous predict`` on the same images.

The tests marked slow start a local Ray instance (tens of seconds on two cores); the
others exercise the actor's work directly and need no Ray.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.infer import Predictor, expand_inputs, load_image
from atrous.infer.io import output_stems, save_png
from atrous.models import load_pretrained
from atrous.scale.ray_predict import MaskWriter, PredictOptions
from tests.scale.conftest import PALETTE, write_images


def _batch(paths: list[Path]) -> dict[str, np.ndarray]:
    stems = output_stems(paths, companions=("_overlay",))
    return {
        "path": np.array([str(p) for p in paths], dtype=object),
        "stem": np.array(stems, dtype=object),
    }


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_actor_writes_the_predictors_masks_and_names_bad_files(
    model_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    writer = MaskWriter(PredictOptions(model=str(model_dir), batch_size=2), str(tmp_path / "out"))
    files = expand_inputs([image_folder])
    answer = writer(_batch(files))
    status = dict(zip(answer["path"], answer["status"]))
    detail = dict(zip(answer["path"], answer["detail"]))
    for name, reason in [("broken.jpg", "truncated"), ("notes.png", "not an image"),
                         ("bomb.png", "too many pixels")]:  # fmt: skip
        assert status[str(image_folder / name)] == "failed"
        assert detail[str(image_folder / name)].startswith(str(image_folder / name))
        assert reason in detail[str(image_folder / name)]
    reference = Predictor(load_pretrained(model_dir), device="cpu")
    stems = {"a.png": "a_png", "a.jpg": "a_jpg", "b.png": "b", "c.png": "c"}
    for name, stem in stems.items():
        assert status[str(image_folder / name)] == "predicted"
        written = Image.open(tmp_path / "out" / f"{stem}.png")
        assert written.mode == "P"
        assert written.getpalette()[:9] == [v for colour in PALETTE for v in colour]
        expected = reference.predict(load_image(image_folder / name))
        np.testing.assert_array_equal(np.asarray(written), expected)
    # Only the masks, no temporary files left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{stem}.png" for stem in stems.values()
    )


def test_save_png_leaves_nothing_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = Image.fromarray(np.zeros((8, 8), np.uint8), mode="P")

    def die_halfway(self: Image.Image, fp: str, format: str | None = None) -> None:
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", die_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_png(image, tmp_path / "mask.png")
    assert list(tmp_path.iterdir()) == []


def test_actor_skips_masks_already_written_and_reads_their_areas(
    model_dir: Path, tmp_path: Path
) -> None:
    files = write_images(tmp_path / "images", 3, (24, 32))
    out = tmp_path / "out"
    options = PredictOptions(model=str(model_dir))
    first = MaskWriter(options, str(out))(_batch(files))
    assert list(first["status"]) == ["predicted"] * 3
    # A mask written by "an earlier run" with known content: it must be kept as is.
    labels = np.zeros((24, 32), np.uint8)
    labels[:, :5] = 2
    from atrous.infer import colorize

    colorize(labels, PALETTE).save(out / "img001.png")
    before = (out / "img001.png").stat().st_mtime_ns
    (out / "img002.png").unlink()
    second = MaskWriter(options, str(out))(_batch(files))
    assert list(second["status"]) == ["skipped", "skipped", "predicted"]
    assert (out / "img001.png").stat().st_mtime_ns == before
    assert second["pixels"][1] == f"[{24 * 27}, 0, {24 * 5}]"
    assert second["pixels"][0] == first["pixels"][0]
    assert second["pixels"][2] == first["pixels"][2]


@pytest.mark.slow
def test_ray_predict_matches_atrous_predict(
    ray_local: object,
    model_dir: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    common = ["--model", str(model_dir), "--overlay", "--batch-size", "2"]
    local = main(
        ["predict", str(image_folder), "--out", str(tmp_path / "local"),
         "--csv", str(tmp_path / "local.csv"), *common]
    )  # fmt: skip
    local_err = capsys.readouterr().err
    on_ray = main(
        ["predict", str(image_folder), "--out", str(tmp_path / "ray"),
         "--csv", str(tmp_path / "ray.csv"), "--ray", "--ray-actors", "2", *common]
    )  # fmt: skip
    ray_err = capsys.readouterr().err
    assert local == on_ray == 1
    for name in ("broken.jpg", "notes.png", "bomb.png"):
        (local_line,) = [
            line for line in local_err.splitlines() if f"  {image_folder / name}" in line
        ]
        (ray_line,) = [line for line in ray_err.splitlines() if f"  {image_folder / name}" in line]
        assert ray_line == local_line
    local_files, ray_files = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert sorted(ray_files) == sorted(local_files)
    assert len(local_files) == 8  # four masks, four overlays
    for name, data in local_files.items():
        assert ray_files[name] == data, f"{name} differs"
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()


@pytest.mark.slow
def test_ray_predict_rerun_skips_written_masks(
    ray_local: object, model_dir: Path, tmp_path: Path
) -> None:
    from atrous.scale.ray_predict import predict_with_ray

    files = write_images(tmp_path / "images", 6, (24, 32))
    out = tmp_path / "out"
    options = PredictOptions(model=str(model_dir), fast=True)
    first = predict_with_ray(files, out, options, actors=2, csv_path=tmp_path / "first.csv")
    assert (first.predicted, first.skipped, first.failures) == (6, 0, [])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "img004.png").unlink()
    second = predict_with_ray(files, out, options, actors=1, csv_path=tmp_path / "second.csv")
    assert (second.predicted, second.skipped) == (1, 5)
    for name, stamp in stamps.items():
        if name != "img004.png":
            assert (out / name).stat().st_mtime_ns == stamp, f"{name} was written again"
    assert (tmp_path / "second.csv").read_text() == (tmp_path / "first.csv").read_text()
    # The fast path gives the masks of the plain predictor (argmax of the same logits).
    reference = Predictor(load_pretrained(model_dir), device="cpu")
    for path in files:
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / f"{path.stem}.png")), reference.predict(load_image(path))
        )


def _descendants(root: int) -> set[int]:
    """Process ids under ``root`` (from /proc; Ray's workers are children of its raylet)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _mask_worker_pids() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(b"ray::MapWorker(MapBatches(MaskWriter))"):
            pids.append(pid)
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process in /proc")
def test_killed_actor_loses_no_finished_output(
    ray_local: object, model_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL the only actor once it has written masks: those stay, complete and untouched;
    Ray Data restarts the actor, retries the batch in flight and the run completes."""
    import signal

    from atrous.scale.ray_predict import predict_with_ray

    files = write_images(tmp_path / "images", 16, (96, 128))
    out = tmp_path / "out"
    # Sliding windows make each image slow enough (~0.1 s) to kill the actor mid-run.
    options = PredictOptions(model=str(model_dir), mode="slide", window=24)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = predict_with_ray(files, out, options, actors=1, progress=False)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(out.glob("img*.png")):
        time.sleep(0.01)
    (pid,) = _mask_worker_pids()
    os.kill(pid, signal.SIGKILL)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("img*.png")}
    assert 0 < len(finished) < len(files), "the run ended before the kill; make images larger"
    killed_at = time.monotonic()
    thread.join(timeout=300)
    print(f"run finished {time.monotonic() - killed_at:.1f} s after the kill")
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.predicted + result.skipped == len(files)  # type: ignore[attr-defined]
    for name, stamp in finished.items():
        assert (out / name).stat().st_mtime_ns == stamp, f"{name} was written again"
    reference = Predictor(load_pretrained(model_dir), mode="slide", window=24)
    for path in files:
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / f"{path.stem}.png")), reference.predict(load_image(path))
        )
