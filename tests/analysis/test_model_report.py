"""Per-stage holes of the model zoo's networks: plain dilation grids, HDC does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.analysis.model_report import stage_report

models = pytest.importorskip("atrous.models")


def _build(name: str, **options: object) -> object:
    if name not in models.list_models():
        pytest.skip(f"{name} not in the model zoo")
    # The coverage never reads conv/norm weights, so skip initialising a ResNet-50.
    with torch.device("meta"):
        return models.build_model(name, num_classes=3, **options)


@pytest.mark.parametrize(
    "rates, holes", [((1, 2, 5, 9), 0.0), ((2, 2, 2), 1 - (7 / 13) ** 2), ((4, 4), None)]
)
def test_dilated_net_body_holes_match_the_chain(
    rates: tuple[int, ...], holes: float | None
) -> None:
    from atrous.analysis import chain_coverage

    rows = stage_report(_build("dilated_net", rates=rates, width=4), 41)
    body = next(row for row in rows if row.name == "body")
    expected = chain_coverage(rates).hole_fraction if holes is None else holes
    assert body.grid_hole_fraction == pytest.approx(expected)
    assert body.dilations == rates
    assert body.source == "stem"


def test_deeplabv3_os8_plain_grids_and_hdc_does_not() -> None:
    plain = stage_report(_build("deeplabv3", backbone="resnet50", output_stride=8), 65)
    hdc = stage_report(
        _build("deeplabv3", backbone="resnet50", output_stride=8, dilation_schedule="hdc"), 65
    )
    plain4 = next(row for row in plain if row.name == "layer4")
    hdc4 = next(row for row in hdc if row.name == "layer4")
    assert plain4.dilations == (2, 4, 4)
    # Rates 2, 4, 4 on layer3's map: only even offsets are reached (the 21x21 field is
    # clipped by the 9x9 map of a 65x65 input).
    side = plain4.grid_coverage.box_shape[0]
    assert plain4.grid_coverage.box_shape == (side, side) and side % 2 == 1
    assert plain4.grid_hole_fraction == pytest.approx(1 - ((side + 1) // 2 / side) ** 2)
    assert plain4.grid_period == (2, 2)
    assert hdc4.grid_hole_fraction == 0.0
    assert all(row.image_hole_fraction == 0.0 for row in plain)


def test_drn_degridding_layers_fill_the_base_grid() -> None:
    rows = {row.name: row for row in stage_report(_build("drn_c_26"), 129)}
    assert rows["layer6"].base == "layer4" and rows["layer6"].base_hole_fraction > 0.5
    assert rows["layer8"].dilations == (1,) and rows["layer8"].base_hole_fraction == 0.0


def test_analysis_imports_nothing_from_engine_data_serve_or_models() -> None:
    from pathlib import Path

    import atrous.analysis

    forbidden = ("atrous.engine", "atrous.data", "atrous.serve", "atrous.models")
    for path in Path(atrous.analysis.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert not any(f"from {name}" in text or f"import {name}" in text for name in forbidden), (
            path
        )


def test_dilated_stages_at_a_pixel_show_the_lattice_where_the_pixel_is() -> None:
    from atrous.analysis.model_report import dilated_stages_at

    model = _build("dilated_net", rates=(2, 2, 2), width=4)
    # Stem stride 2: the pixel (y=40, x=30) of an 81x101 image sits over position (20, 15)
    # of the 41x51 stem map; rates 2,2,2 reach a 13x13 box there, even offsets only.
    (body,) = dilated_stages_at(model, (81, 101), (40, 30))
    assert (body.name, body.source, body.stride, body.rates) == ("body", "stem", 2, (2, 2, 2))
    assert body.coverage.location == (20, 15)
    assert body.coverage.box == (14, 27, 9, 22)
    assert body.coverage.hole_fraction == pytest.approx(1 - (7 / 13) ** 2)
    assert body.coverage.grid_period == (2, 2)
    # Near the corner the field is cut off by the map's border: another map, fewer holes.
    (corner,) = dilated_stages_at(model, (81, 101), (0, 0))
    assert corner.coverage.box == (0, 7, 0, 7)
    assert not np.array_equal(corner.coverage.counts, body.coverage.counts)


def test_dilated_stages_at_include_the_heads_aspp() -> None:
    from atrous.analysis.model_report import dilated_stages_at

    model = _build("deeplabv3", backbone="resnet18", output_stride=16)
    stages = dilated_stages_at(model, (360, 480), (250, 300))
    assert [(s.name, s.title, s.rates, s.source) for s in stages] == [
        ("layer4", "layer4", (1, 2), "layer3"),
        ("head", "ASPP", (6, 12, 18), "layer4"),
    ]
    aspp = stages[-1].coverage
    # Over pixel (250, 300) of a 360x480 image: position (16, 18) of the 23x30 map. The
    # 1x1 branch and the centre taps of the three 3x3 branches all reach that position.
    assert aspp.counts.shape == (23, 30) and aspp.location == (16, 18)
    assert aspp.counts[16, 18] == 4 and aspp.grid_period == (6, 6)
    reached = {(int(y) - 16, int(x) - 18) for y, x in zip(*np.nonzero(aspp.counts))}
    assert reached == {
        (dy * r, dx * r)
        for r in (6, 12, 18)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if 0 <= 16 + dy * r < 23 and 0 <= 18 + dx * r < 30
    }


def test_dilated_stages_at_need_a_segmentor() -> None:
    from atrous.analysis.model_report import dilated_stages_at

    assert dilated_stages_at(torch.nn.Conv2d(3, 3, 3, padding=2, dilation=2), 16, (3, 3)) == []
    undilated = _build("deeplabv3", backbone="resnet18", output_stride=32, aspp_rates=(1, 1, 1))
    assert dilated_stages_at(undilated, 64, (10, 10)) == []
