"""Receptive-field arithmetic against Yu & Koltun's published table and exact coverage."""

from __future__ import annotations

import pytest
from torch import nn

from atrous.analysis import (
    ConvGeometry,
    context_module_layers,
    coverage_map,
    receptive_field_table,
)


def test_yu_koltun_context_module_table() -> None:
    # Yu & Koltun (2016), Table 1: receptive field 3, 5, 9, 17, 33, 65, 67, 67.
    rows = receptive_field_table(context_module_layers())
    assert [row.size for row in rows] == [3, 5, 9, 17, 33, 65, 67, 67]
    assert all(row.jump == 1 for row in rows)
    # 'same' padding keeps the first output's field centred on input pixel 0.
    assert all(row.start == 0 for row in rows)
    assert [row.layer.dilation for row in rows] == [1, 1, 2, 4, 8, 16, 1, 1]
    assert rows[-1].layer.kernel_size == 1


def test_strided_stem_and_pool_like_resnet() -> None:
    # ResNet stem: 7x7/2 pad 3, max-pool 3x3/2 pad 1: fields 7 and 11, jumps 2 and 4.
    rows = receptive_field_table([ConvGeometry("conv", 7, 2, 1, 3), ("pool", 3, 2, 1, 1)])
    assert [(r.size, r.jump) for r in rows] == [(7, 2), (11, 4)]
    assert [r.start for r in rows] == [0, 0]


def test_unpadded_start_and_accepted_forms() -> None:
    rows = receptive_field_table(
        [(3,), {"kernel_size": 3, "dilation": 2}, ConvGeometry(kernel_size=2, stride=2)]
    )
    assert [r.size for r in rows] == [3, 7, 8]
    # Without padding the first output's field starts at 0, so its centre moves right.
    assert [r.start for r in rows] == [1.0, 3.0, 3.5]
    assert rows[-1].jump == 2


def test_invalid_layer_is_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="dilation"):
        ConvGeometry(kernel_size=3, dilation=0)
    with pytest.raises(ValueError, match="kind"):
        ConvGeometry("deconv")


@pytest.mark.parametrize("rates", [(1, 2, 5), (3, 1), (2, 4)])
def test_table_size_matches_the_exact_coverage_box(rates: tuple[int, ...]) -> None:
    # An independent reference: the box measured by backpropagating through torch's conv.
    layers = [nn.Conv2d(1, 1, 3, dilation=r, padding=r) for r in rates]
    size = receptive_field_table([ConvGeometry(kernel_size=3, dilation=r) for r in rates])[-1].size
    coverage = coverage_map(nn.Sequential(*layers), (size + 10, size + 10), in_channels=1)
    assert coverage.box_shape == (size, size)
