"""Figures and the HTML/Markdown report of a demo run.

The sentences under the table are built from the measured numbers (which model won,
by how much, where the holes are), so the report never claims what the run did not show.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atrous.demo.results import DemoResult, ModelResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _colour(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[255] = (255, 255, 255)
    return table[labels]


def _predict_all(model: Any, dataset: Any, batch: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true label maps of the whole validation split."""
    import torch

    from atrous.engine import predict_batch

    model = model.cpu().eval()
    images, masks = zip(*(dataset[i] for i in range(len(dataset))))
    x = torch.stack(images)
    with torch.no_grad():
        pred = torch.cat([predict_batch(model, x[i : i + batch]) for i in range(0, len(x), batch)])
    return pred.numpy(), torch.stack(masks).numpy()


def fragmentation(pred: np.ndarray, truth: np.ndarray) -> float:
    """Label changes between neighbouring pixels inside objects, per 100 pixel pairs.

    Only pairs where both pixels belong to the same non-background ground-truth class
    count, so object boundaries do not; a model that labels each object in one piece
    scores 0, a checkerboard scores high.
    """
    changes, pairs = 0, 0
    for axis in (1, 2):
        n = truth.shape[axis]
        first, second = range(n - 1), range(1, n)
        a, b = truth.take(first, axis), truth.take(second, axis)
        same = (a == b) & (a > 0) & (a != 255)
        flips = pred.take(first, axis) != pred.take(second, axis)
        changes += int((flips & same).sum())
        pairs += int(same.sum())
    return 100.0 * changes / max(pairs, 1)


def _pick_samples(truth: np.ndarray, count: int) -> list[int]:
    """Validation images with the most 'marked' and 'plain' disc pixels (most to see)."""
    score = [(int((m == 2).sum()) + int((m == 1).sum()) // 2, -i) for i, m in enumerate(truth)]
    return [-i for _, i in sorted(score, reverse=True)[:count]]


def write_figures(
    demo: DemoResult, trained: dict[str, tuple[Any, Any, Any]], val_set: Any
) -> dict[str, str]:
    """Predictions grid, training curves and the coverage/ERF panel; paths relative to out."""
    predictions: dict[str, np.ndarray] = {}
    truth = np.zeros(0)
    for row in demo.rows:
        pred, truth = _predict_all(trained[row.key][0], val_set)
        predictions[row.key] = pred
        row.fragmentation = fragmentation(pred, truth)
    return {
        "predictions": _predictions_figure(demo, predictions, truth, val_set),
        "curves": _curves_figure(demo),
        "receptive_fields": _receptive_fields_figure(demo, trained),
    }


def _predictions_figure(
    demo: DemoResult, predictions: dict[str, np.ndarray], truth: np.ndarray, val_set: Any
) -> str:
    """Figure 1: sample images, their ground truth and every model's prediction."""
    from atrous.data.transforms import denormalize

    plt = _pyplot()
    out = demo.out_dir
    palette = val_set.palette
    picks = _pick_samples(truth, demo.settings.sample_count)
    labels = ["image", "ground truth", *(row.label for row in demo.rows)]
    figure, axes = plt.subplots(
        len(picks),
        len(labels),
        figsize=(1.9 * len(labels), 1.95 * len(picks) + 0.3),
        dpi=100,
        squeeze=False,
    )
    for r, index in enumerate(picks):
        image = denormalize(val_set[index][0]).permute(1, 2, 0).numpy()
        panels = [image, _colour(truth[index], palette)]
        panels += [_colour(predictions[row.key][index], palette) for row in demo.rows]
        for c, panel in enumerate(panels):
            axis = axes[r][c]
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(labels[c], fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(palette[i]) / 255) for i in range(1, 3)]
    figure.legend(handles, demo.class_names[1:3], loc="lower center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(figure, out / "predictions.png", out)


def _curves_figure(demo: DemoResult) -> str:
    """Figure 2: training loss and validation mIoU per epoch, one line per model."""
    plt = _pyplot()
    out = demo.out_dir
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for row in demo.rows:
        epochs = [h["epoch"] for h in row.history]
        left.plot(epochs, [h["train_loss"] for h in row.history], marker=".", label=row.label)
        right.plot(epochs, [h.get("val_miou", math.nan) for h in row.history], marker=".")
    left.set(title="training loss", xlabel="epoch", yscale="log")
    right.set(title="validation mIoU", xlabel="epoch", ylim=(0, 1))
    left.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, out / "curves.png", out)


def _receptive_fields_figure(demo: DemoResult, trained: dict[str, tuple[Any, Any, Any]]) -> str:
    """Figure 3: where each model looks: exact coverage (holes red) and measured ERF."""
    from atrous.analysis.plots import HOLE_COLOUR, coverage_image

    plt = _pyplot()
    out = demo.out_dir
    figure, axes = plt.subplots(
        2, len(demo.rows), figsize=(2.6 * len(demo.rows), 5.4), dpi=100, squeeze=False
    )
    for c, row in enumerate(demo.rows):
        _, coverage, erf = trained[row.key]
        image, (y0, x0) = coverage_image(coverage)
        h, w = image.shape[:2]
        top = axes[0][c]
        top.imshow(
            image, interpolation="nearest", extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)
        )
        top.set_title(
            f"{row.label}\nRF {row.rf_size[0]}px, holes {row.hole_fraction:.0%}", fontsize=8
        )
        bottom = axes[1][c]
        bottom.imshow(erf.map, cmap="magma", interpolation="nearest")
        bottom.set_title(f"ERF: 50% within r={row.erf_radius_50:.1f}px", fontsize=8)
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    figure.legend(
        [plt.Rectangle((0, 0), 1, 1, color=HOLE_COLOUR)],
        ["hole: input pixel no path reaches"],
        loc="lower center",
        fontsize=8,
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(figure, out / "receptive_fields.png", out)


def _save(figure: Any, path: Path, root: Path) -> str:
    figure.savefig(path)
    _pyplot().close(figure)
    return str(path.relative_to(root))


def results_table(rows: Sequence[ModelResult], class_names: Sequence[str]) -> list[list[str]]:
    """Header plus one row per model, as strings."""
    header = [
        "model",
        "params",
        "val mIoU",
        *(f"IoU {n}" for n in class_names),
        "boundary F1",
        "holes",
        "RF (px)",
        "ERF r50 (px)",
        "fragmentation",
        "train s",
    ]
    body = [
        [
            row.label,
            f"{row.parameters / 1e3:.0f}k"
            if row.parameters < 1e6
            else f"{row.parameters / 1e6:.2f}M",
            f"{row.miou:.3f}",
            *(f"{row.per_class_iou.get(n, math.nan):.3f}" for n in class_names),
            f"{row.boundary_f1:.3f}",
            f"{row.hole_fraction:.0%}",
            "x".join(str(s) for s in row.rf_size),
            f"{row.erf_radius_50:.1f}",
            f"{row.fragmentation:.1f}",
            f"{row.train_seconds:.0f}",
        ]
        for row in rows
    ]
    return [header, *body]


def format_table(table: list[list[str]]) -> str:
    """Plain-text table for the terminal."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(lines)


def findings(demo: DemoResult) -> list[str]:
    """Sentences on what the numbers show, each built from the measured values."""
    from atrous.data.synthetic import DiscStyle

    keys = {row.key: row for row in demo.rows}
    lines: list[str] = []
    hdc, grid, flat = keys.get("hdc"), keys.get("gridded"), keys.get("undilated")
    if hdc and grid and flat:
        best = max((hdc, grid, flat), key=lambda r: r.miou)
        others = [r for r in (hdc, grid, flat) if r is not best]
        if best.miou - max(r.miou for r in others) < 0.005:
            lines.append(
                f"The three stacks with the same {hdc.parameters:,} parameters are tied on "
                f"validation mIoU (within 0.005 of {best.miou:.3f}): this run is too short "
                "to tell them apart."
            )
        else:
            lines.append(
                f"Among the three stacks with the same {hdc.parameters:,} parameters, "
                f"{best.label} has the best validation mIoU ({best.miou:.3f}), "
                + " and ".join(f"{best.miou - r.miou:+.3f} over {r.label}" for r in others)
                + "."
            )
        marked = demo.class_names[2] if len(demo.class_names) > 2 else None
        if marked:
            lines.append(
                f"On '{marked}', the class that needs the dot at the disc's centre, IoU is "
                + ", ".join(f"{r.per_class_iou[marked]:.3f} ({r.label})" for r in (hdc, grid, flat))
                + "."
            )
        max_radius = DiscStyle().max_radius
        reach = (flat.rf_size[0] - 1) // 2
        lines.append(
            f"The undilated stack's receptive field is {flat.rf_size[0]} px wide (it sees "
            f"{reach} px to each side) and half its effective receptive field lies within "
            f"{flat.erf_radius_50:.1f} px, while disc radii go up to {max_radius} px"
            + (
                ": from the rim of a large disc it cannot see the centre."
                if reach < max_radius
                else "."
            )
        )
        lines.append(
            f"Equal rates reach {grid.rf_size[0]} px but leave {grid.hole_fraction:.0%} of that "
            f"box unread (holes{', a regular grid' if grid.is_grid else ''}); the HDC schedule "
            f"reaches {hdc.rf_size[0]} px with {hdc.hole_fraction:.0%} holes."
        )
        frag = [r.fragmentation for r in (grid, hdc, flat)]
        if not any(math.isnan(f) for f in frag):
            verdict = (
                "the checkerboard of the gridded model in the predictions figure"
                if frag[0] > 1.5 * max(frag[1], 0.1)
                else "no clear checkerboard in this run"
            )
            lines.append(
                f"Inside objects the predicted label flips {frag[0]:.1f} times per 100 "
                f"neighbouring pixel pairs for the gridded model, {frag[1]:.1f} for HDC and "
                f"{frag[2]:.1f} without dilation: {verdict}."
            )
    return lines


@dataclass(frozen=True)
class Claim:
    """One of the four claims the demo tests, whether this run's numbers show it, and
    the numbers that decide."""

    text: str
    shown: bool
    evidence: str

    def line(self) -> str:
        verdict = "shown" if self.shown else "not shown at this budget"
        return f"{self.text}: {verdict} ({self.evidence})."


def claims(demo: DemoResult) -> list[Claim]:
    """The four claims, each judged on this run's numbers (a model that did not run
    leaves its claim out)."""
    keys = {row.key: row for row in demo.rows}
    hdc, grid, flat = keys.get("hdc"), keys.get("gridded"), keys.get("undilated")
    found: list[Claim] = []
    if hdc and flat:
        found.append(
            Claim(
                "Dilation grows context",
                hdc.rf_size[0] > flat.rf_size[0] and hdc.miou > flat.miou,
                f"receptive field {hdc.rf_size[0]} px with dilation against "
                f"{flat.rf_size[0]} px without, same parameters; mIoU {hdc.miou:.3f} "
                f"against {flat.miou:.3f}",
            )
        )
    if grid and hdc:
        found.append(
            Claim(
                "Equal rates grid",
                grid.hole_fraction > 0 and grid.miou < hdc.miou,
                f"rates (4,4,4,4) leave {grid.hole_fraction:.0%} of their field unread; "
                f"mIoU {grid.miou:.3f} against HDC's {hdc.miou:.3f}",
            )
        )
    if hdc and grid and flat:
        found.append(
            Claim(
                "HDC fixes it",
                hdc.hole_fraction == 0 and hdc.miou > max(grid.miou, flat.miou),
                f"rates (1,2,5,9): {hdc.hole_fraction:.0%} holes, mIoU {hdc.miou:.3f} "
                f"against {grid.miou:.3f} (gridded) and {flat.miou:.3f} (undilated)",
            )
        )
    aspp_claim = _aspp_claim(keys)
    if aspp_claim is not None:
        found.append(aspp_claim)
    return found


def _aspp_claim(keys: dict[str, ModelResult]) -> Claim | None:
    """ASPP against the same body without it, decided against the spread between seeds: shown
    only when the worse ASPP seed beats the better plain seed by more than either
    model's two seeds differ."""
    with_aspp = [keys[k] for k in ("aspp", "aspp_seed2") if k in keys]
    without = [keys[k] for k in ("undilated", "undilated_seed2") if k in keys]
    if not with_aspp or not without:
        return None
    spread = max(
        max(r.miou for r in group) - min(r.miou for r in group) for group in (with_aspp, without)
    )
    margin = min(r.miou for r in with_aspp) - max(r.miou for r in without)
    seeds = min(len(with_aspp), len(without))
    shown = margin > spread if seeds > 1 else False
    evidence = (
        f"the undilated stack with an ASPP head reaches mIoU "
        f"{', '.join(f'{r.miou:.3f}' for r in with_aspp)} against "
        f"{', '.join(f'{r.miou:.3f}' for r in without)} without it (same body); margin "
        f"{margin:+.3f}, seed spread {spread:.3f}"
    )
    if seeds < 2:
        evidence += "; one seed only, so no spread to compare with"
    return Claim("ASPP adds multi-scale context", shown, evidence)


def write_report(demo: DemoResult, budget_note: str) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder; return their paths."""
    table = results_table(demo.rows, demo.class_names)
    s = demo.settings
    intro = (
        f"Synthetic context dataset: {s.train_images} training and {s.val_images} validation "
        f"images of {s.image_size}x{s.image_size} px, seed {s.seed}. Every disc has the same "
        "texture; a disc is 'marked' only if a 3x3 dot sits at its centre, so a pixel's class "
        "needs context up to a disc radius away. Budget for every model: "
        f"{budget_note}; AdamW lr {s.lr}, batch {s.batch_size}, device {s.device}. "
        f"Total time {demo.seconds / 60:.1f} min."
    )
    notes = [claim.line() for claim in claims(demo)] + findings(demo)
    figure_text = {
        "predictions": "Validation predictions next to ground truth.",
        "receptive_fields": "Exact coverage of the centre output pixel (log path counts, holes "
        "red; each map cropped to its own receptive field) and the measured effective receptive "
        "field of each trained model (full input).",
        "curves": "Training loss and validation mIoU per epoch.",
    }
    md = ["# atrous demo: dilation, gridding and HDC", "", intro, "", _markdown_table(table), ""]
    md += [f"- {line}" for line in notes] + [""]
    md.append(
        "Fragmentation: label changes between neighbouring pixels inside objects, per 100 "
        "pixel pairs. Holes: share of the receptive-field box no path reaches."
    )
    md.append("")
    for key, caption in figure_text.items():
        if key in demo.figures:
            md += [f"![{key}]({demo.figures[key]})", "", caption, ""]
    md.append("## Per model")
    for row in demo.rows:
        md += [
            f"### {row.label}",
            f"`{row.name}` with `{row.options}`",
            "",
            f"![coverage]({row.coverage_png}) ![ERF]({row.erf_png})",
            "",
        ]
    md_path = demo.out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    esc = html.escape
    rows_html = "".join(
        "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{esc(c)}</{'th' if i == 0 else 'td'}>"
                         for c in r) + "</tr>"
        for i, r in enumerate(table)
    )  # fmt: skip
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>atrous demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}img{max-width:100%}figure{margin:1em 0}</style></head><body>",
        "<h1>atrous demo: dilation, gridding and HDC</h1>",
        f"<p>{esc(intro)}</p>",
        f"<table>{rows_html}</table>",
        "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in notes) + "</ul>",
        "<p>Fragmentation: label changes between neighbouring pixels inside objects, per 100 "
        "pixel pairs. Holes: share of the receptive-field box no path reaches.</p>",
    ]
    for key, caption in figure_text.items():
        if key in demo.figures:
            parts.append(
                f"<figure><img src='{esc(demo.figures[key])}' alt='{key}'>"
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    parts.append("<h2>Per model</h2>")
    for row in demo.rows:
        parts.append(
            f"<h3>{esc(row.label)}</h3><p><code>{esc(row.name)} {esc(str(row.options))}</code></p>"
            f"<img src='{esc(row.coverage_png)}' width='380' alt='coverage'>"
            f"<img src='{esc(row.erf_png)}' width='380' alt='ERF'>"
        )
    parts.append("</body></html>")
    html_path = demo.out_dir / "report.html"
    html_path.write_text("\n".join(parts) + "\n")
    return md_path, html_path
