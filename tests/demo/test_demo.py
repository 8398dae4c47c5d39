"""``atrous demo``: the report is written, and the ordering the demo shows really holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.demo import DemoResult, DemoSettings, ModelResult, run_demo
from atrous.demo.report import fragmentation


def _non_blank(path: Path) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_cli_writes_report_and_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A tiny run through the command line: one epoch, three stacks, a handful of images.
    out = tmp_path / "run"
    code = main(
        ["demo", "--out", str(out), "--epochs", "1", "--train-images", "16",
         "--val-images", "4", "--image-size", "48", "--models", "undilated,gridded,hdc", "--no-progress"]
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


def test_report_from_untrained_models(tmp_path: Path) -> None:
    # The report writer alone, on randomly initialised stacks: files exist, pictures are
    # not blank, the sentences quote the numbers given.
    from atrous.analysis import coverage_map, effective_receptive_field
    from atrous.data import build_dataset, eval_transforms
    from atrous.data.synthetic import generate
    from atrous.demo import DemoResult, ModelResult, demo_models
    from atrous.demo.report import write_figures, write_report
    from atrous.models import build_model

    root = generate(tmp_path / "data", seed=0, train=0, val=3, size=48)
    val_set = build_dataset("folder", root, split="val", transform=eval_transforms())
    rows, trained = [], {}
    for i, spec in enumerate(demo_models(8)):
        model = build_model(spec.name, num_classes=3, **spec.options).eval()
        coverage = coverage_map(model, (48, 48))
        erf = effective_receptive_field(model, (48, 48), samples=1)
        trained[spec.key] = (model, coverage, erf)
        rows.append(
            ModelResult(
                key=spec.key, label=spec.label, name=spec.name, options=spec.options,
                parameters=1000, miou=0.5 + 0.1 * i, boundary_f1=0.5, pixel_acc=0.9,
                per_class_iou={"background": 0.9, "plain disc": 0.4, "marked disc": 0.3 + i / 10},
                hole_fraction=coverage.hole_fraction, is_grid=coverage.is_grid,
                rf_size=coverage.box_shape, erf_radius_50=erf.radius(0.5),
                erf_radius_95=erf.radius(0.95), train_seconds=1.0,
                history=[{"epoch": 1, "train_loss": 1.0, "val_miou": 0.4},
                         {"epoch": 2, "train_loss": 0.5, "val_miou": 0.5 + 0.1 * i}],
            )
        )  # fmt: skip
    demo = DemoResult(tmp_path, DemoSettings(), 2, rows, list(val_set.class_names), 60.0)
    demo.figures = write_figures(demo, trained, val_set)
    md, html = write_report(demo, "2 epochs")
    for name in ("predictions.png", "curves.png", "receptive_fields.png"):
        assert name in html.read_text() and name in md.read_text()
        assert _non_blank(tmp_path / name), name
    text = md.read_text()
    # HDC was given the best mIoU (0.7): the findings name it and its margins.
    assert "HDC (1,2,5,9) has the best validation mIoU (0.700)" in text
    assert "+0.200 over no dilation (1,1,1,1)" in text
    assert "0.500 (HDC (1,2,5,9))" in text  # marked-disc IoU quoted


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


# Fixed epochs and seeds: the outcome does not depend on the machine's speed, only the
# run time does: about 100 s on 2 idle cores, more than 30 minutes at a load average of 13
# (2026-12-01, 2-core Xeon shared with a CamVid training run). The suite's 10-minute hang
# guard made it fail on a busy machine; this one only catches a real hang.
@pytest.mark.timeout(7200)
def test_hdc_beats_gridded_and_undilated(tmp_path: Path) -> None:
    """The ordering the demo is built to show, on a shorter run (about 100 s on 2 idle cores).

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
    demo = run_demo(tmp_path / "run", settings, progress=False)
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
    # The report was written from this run, with its figures.
    assert demo.report_html is not None and demo.report_html.exists()
    assert f"{hdc.miou:.3f}" in demo.report_html.read_text()
    assert _non_blank(tmp_path / "run" / "predictions.png")


class FakeClock:
    """A clock that moves only when told: the tests below time nothing real."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 0.0
        self.tick = tick  # seconds added by every reading
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick
        return self.now


def test_warmup_steps_are_excluded_from_timing() -> None:
    from atrous.demo import time_step

    clock = FakeClock()
    durations = iter([2.5, 1.8, 1.3, 1.1, 1.4, 1.0])  # cold first steps, then warm ones
    calls = []

    def step() -> None:
        calls.append(clock.readings)
        clock.now += next(durations)

    # The fastest timed step: other processes only ever slow a step down.
    assert time_step(step, warmup=3, repeats=3, clock=clock) == pytest.approx(1.0)
    assert len(calls) == 6
    # The clock is read only around the three timed steps, never during the warm-up.
    assert calls[:3] == [0, 0, 0] and clock.readings == 6
    # Without warm-up the cold steps would have been timed.
    clock, durations = FakeClock(), iter([2.5, 1.8, 1.9])
    assert time_step(step, warmup=0, repeats=3, clock=clock) == pytest.approx(1.8)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_step(step, warmup=1, repeats=0)


def test_epoch_budget_is_explicit_or_derived_within_bounds(tmp_path: Path) -> None:
    # Timed through a fake clock: every timed step and every batch read "takes" 0.25 s on
    # any machine, so the chosen count is exact, whatever the speed or load of this one.
    from atrous.data.synthetic import generate
    from atrous.demo import choose_epochs, demo_models

    root = generate(tmp_path / "data", seed=0, train=32, val=0, size=48)
    hdc = [m for m in demo_models(8) if m.key == "hdc"]
    fixed = DemoSettings(train_images=32, image_size=48, epochs=7)
    assert choose_epochs(hdc, fixed, "cpu", root) == (7, "7 epochs (set explicitly)")
    # 2 steps per epoch; per epoch 1.15 * (0.25 s step + 0.25 s load) * 2 = 1.15 s; 70% of
    # 0.1 minutes is 4.2 s: 3 epochs.
    settings = DemoSettings(train_images=32, image_size=48, minutes=0.1, min_epochs=2)
    epochs, note = choose_epochs(hdc, settings, "cpu", root, clock=FakeClock(0.25))
    assert epochs == 3, note
    assert "took 0.25 s here (fastest of 5 after 3 warm-up steps) plus 0.25 s" in note
    # A tiny time target gives the lower bound, a huge one the upper bound.
    quick = {"train_images": 32, "image_size": 48, "warmup_steps": 0, "timed_steps": 1}
    short = DemoSettings(minutes=0.001, min_epochs=2, **quick)
    epochs, note = choose_epochs(hdc, short, "cpu", root, clock=FakeClock(0.25))
    assert epochs == 2 and "fit 70% of 0.001 minutes" in note
    long = DemoSettings(minutes=1e6, max_epochs=9, **quick)
    assert choose_epochs(hdc, long, "cpu", root, clock=FakeClock(0.25))[0] == 9


def _row(key: str, miou: float, holes: float = 0.0, rf: int = 21) -> ModelResult:
    return ModelResult(
        key=key, label=key, name="dilated_net", options={}, parameters=1000, miou=miou,
        boundary_f1=0.5, pixel_acc=0.9, per_class_iou={}, hole_fraction=holes, is_grid=False,
        rf_size=(rf, rf), erf_radius_50=1.0, erf_radius_95=2.0, train_seconds=1.0,
    )  # fmt: skip


def test_claims_are_stated_only_where_the_numbers_support_them(tmp_path: Path) -> None:
    from atrous.demo.report import claims

    stacks = [_row("undilated", 0.80), _row("gridded", 0.66, 0.57, 69), _row("hdc", 0.98, 0.0, 73)]
    clear = [_row("aspp", 0.90), _row("aspp_seed2", 0.91), _row("undilated_seed2", 0.81)]
    demo = DemoResult(tmp_path, DemoSettings(), 6, stacks + clear, ["a", "b", "c"], 1.0)
    verdicts = {claim.text: claim.shown for claim in claims(demo)}
    assert verdicts == {
        "Dilation grows context": True,
        "Equal rates grid": True,
        "HDC fixes it": True,
        "ASPP adds multi-scale context": True,
    }
    # ASPP ahead of one plain seed but not of the other by more than the seeds differ.
    close = [_row("aspp", 0.84), _row("aspp_seed2", 0.90), _row("undilated_seed2", 0.83)]
    demo = DemoResult(tmp_path, DemoSettings(), 6, stacks + close, ["a", "b", "c"], 1.0)
    aspp = next(c for c in claims(demo) if c.text.startswith("ASPP"))
    assert not aspp.shown
    assert "not shown at this budget" in aspp.line() and "seed spread 0.060" in aspp.line()
    # A gridded model that wins is not "equal rates grid".
    stacks[1] = _row("gridded", 0.99, 0.57, 69)
    demo = DemoResult(tmp_path, DemoSettings(), 6, stacks, ["a", "b", "c"], 1.0)
    verdicts = {claim.text: claim.shown for claim in claims(demo)}
    assert verdicts["Equal rates grid"] is False and verdicts["HDC fixes it"] is False
    assert "ASPP adds multi-scale context" not in verdicts  # the ASPP models did not run
