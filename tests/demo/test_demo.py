"""``atrous demo``: the report is written, and the ordering the demo shows really holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.demo import DemoSettings, run_demo
from atrous.demo.report import fragmentation


def _non_blank(path: Path) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_cli_writes_report_and_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A tiny run through the command line: one epoch, three stacks, a handful of images.
    out = tmp_path / "run"
    code = main(
        ["demo", "--out", str(out), "--epochs", "1", "--train-images", "16",
         "--val-images", "4", "--models", "undilated,gridded,hdc", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for label in ("no dilation (1,1,1,1)", "gridded (4,4,4,4)", "HDC (1,2,5,9)", "val mIoU"):
        assert label in printed
    assert f"report: {out / 'report.html'}" in printed
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for name in ("predictions.png", "curves.png", "receptive_fields.png"):
        assert name in html and name in md
        assert _non_blank(out / name), name
    for key in ("undilated", "gridded", "hdc"):
        assert _non_blank(out / "models" / key / "coverage.png")
        assert _non_blank(out / "models" / key / "erf.png")
        assert (out / "models" / key / "best").is_dir()  # engine run folder, from disk
    assert (out / "data" / "classes.json").exists()
    assert (out / "results.json").exists()


def test_fragmentation_counts_label_flips_inside_objects_only() -> None:
    truth = np.zeros((1, 8, 8), dtype=np.int64)
    truth[0, 2:6, 2:6] = 1
    solid = truth.copy()
    assert fragmentation(solid, truth) == 0.0
    # Predicting the wrong class for the whole object is not fragmentation either.
    assert fragmentation(solid * 2, truth) == 0.0
    checker = truth.copy()
    checker[0, 2:6:2, 2:6:2] = 2  # 4 isolated pixels inside the 4x4 object
    # 24 same-class neighbour pairs inside (12 per axis); each isolated pixel breaks the
    # pairs with its inside neighbours: 2 + 3 + 3 + 4 = 12 flips.
    assert fragmentation(checker, truth) == pytest.approx(100 * 12 / 24)


@pytest.mark.slow
def test_hdc_beats_gridded_and_undilated(tmp_path: Path) -> None:
    """The ordering the demo is built to show, on a shorter run (about 95 s on 2 cores).

    Measured with these settings (200 training images, 16 epochs) for seeds 0, 1, 2 on an
    unloaded 2-core CPU: HDC 0.983/0.975/0.980, no dilation 0.824/0.832/0.819, gridded
    0.715/0.710/0.742. The smallest gaps were 0.144 (HDC - no dilation) and 0.238 (HDC -
    gridded); the margins asserted are about 60% of those.
    """
    settings = DemoSettings(
        seed=0,
        train_images=200,
        val_images=40,
        epochs=16,
        erf_samples=2,
        models=("undilated", "gridded", "hdc"),
    )
    demo = run_demo(tmp_path / "run", settings, progress=False, report=False)
    hdc, grid, flat = demo.row("hdc"), demo.row("gridded"), demo.row("undilated")
    summary = {r.key: round(r.miou, 3) for r in demo.rows}
    assert hdc.miou > 0.9, summary
    assert hdc.miou - flat.miou > 0.08, summary
    assert hdc.miou - grid.miou > 0.15, summary
    # Same parameters, different schedules: the gridded one has holes, HDC none.
    assert hdc.parameters == grid.parameters == flat.parameters
    assert grid.hole_fraction > 0.3 and grid.is_grid
    assert hdc.hole_fraction == 0.0 and flat.hole_fraction == 0.0
    # HDC reaches as far as the gridded stack; no dilation stays small.
    assert hdc.rf_size[0] >= grid.rf_size[0] > 2 * flat.rf_size[0]
