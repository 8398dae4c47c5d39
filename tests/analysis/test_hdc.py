"""HDC rule (Wang et al., 2018) on the paper's cases, and the schedule designer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from atrous.analysis import chain_counts_1d, design_schedules, hdc_check, m_values
from atrous.analysis.hdc import _hole_free


def test_m_values_by_hand() -> None:
    # [1, 2, 5]: M_3 = 5; M_2 = max(5 - 4, 5 - 2 * 3, 2) = 2; M_1 = max(2 - 2, 2 - 2, 1) = 1.
    assert m_values([1, 2, 5]) == (1, 2, 5)
    # [1, 2, 9]: M_2 = max(9 - 4, 9 - 14, 2) = 5.
    assert m_values([1, 2, 9])[1] == 5
    # [2, 2, 2]: M_2 = max(2 - 4, 2 - 0, 2) = 2.
    assert m_values([2, 2, 2]) == (2, 2, 2)


def test_known_cases() -> None:
    good = hdc_check([1, 2, 5], 3)
    assert good.m2 == 2 and good.m_rule_passes and good.hole_fraction == 0 and good.passes
    assert good.common_factor == 1 and not good.has_common_factor
    assert good.receptive_field == 17
    assert "passes" in good.explanation.lower()

    bad = hdc_check([1, 2, 9], 3)
    assert bad.m2 == 5 and not bad.m_rule_passes and not bad.passes
    assert bad.hole_fraction > 0
    assert "M_2 = 5 > K = 3" in bad.explanation

    # The M-rule holds, but every rate is even: the exact check must catch the holes.
    tricky = hdc_check([2, 2, 2], 3)
    assert tricky.m2 == 2 and tricky.m_rule_passes
    assert tricky.has_common_factor and tricky.common_factor == 2
    assert tricky.hole_fraction == pytest.approx(1 - (7 / 13) ** 2)
    assert tricky.coverage.is_grid and tricky.coverage.grid_period == (2, 2)
    assert not tricky.passes
    assert "M-rule alone misses" in tricky.explanation


def test_single_layer_and_bad_input() -> None:
    assert hdc_check([1]).passes and hdc_check([1]).m2 is None
    assert not hdc_check([3]).passes
    with pytest.raises(ValueError, match="rates"):
        hdc_check([])
    with pytest.raises(ValueError, match=">= 1"):
        hdc_check([1, 0])


@pytest.mark.parametrize("target, max_rate", [(67, None), (67, 8), (41, None), (15, 3)])
def test_designed_schedules_are_hole_free_and_ordered(target: int, max_rate: int | None) -> None:
    schedules = design_schedules(3, target, max_layers=7, max_rate=max_rate, limit=6)
    assert schedules
    layers = [s.layers for s in schedules]
    assert layers == sorted(layers)
    for s in schedules:
        assert s.receptive_field >= target
        assert max_rate is None or s.largest_rate <= max_rate
        assert hdc_check(s.rates).hole_fraction == 0  # independent exact check
        assert list(s.rates) == sorted(s.rates)
        assert s.explanation


def test_designer_finds_the_fewest_layers_of_an_exhaustive_search() -> None:
    # Exhaustive over all multisets of rates <= 12 with up to 4 layers (independent of the
    # designer's prefix-grown search space).
    for target in (9, 17, 25, 41):
        need = (target - 1) // 2  # rate sum that reaches an odd target with 3x3 kernels
        best = None
        for layers in range(1, 5):
            for rates in itertools.combinations_with_replacement(range(1, 13), layers):
                counts = chain_counts_1d(rates, 3)
                if sum(rates) >= need and np.all(counts > 0):
                    best = layers
                    break
            if best:
                break
        designed = design_schedules(3, target, max_layers=4, max_rate=12, limit=1)
        assert designed and designed[0].layers == best, target


def test_bitset_hole_test_agrees_with_counts() -> None:
    for rates in itertools.product(range(1, 6), repeat=3):
        assert _hole_free(rates, 3) == bool(np.all(chain_counts_1d(rates, 3) > 0))


def test_impossible_limits_give_an_empty_list() -> None:
    assert design_schedules(3, 1001, max_layers=3, max_rate=5) == []
