"""Receptive field, exact coverage (gridding) maps, the HDC rule, schedule design and
the effective receptive field, with their plots.

Imports nothing from ``atrous.engine``, ``atrous.data`` or ``atrous.serve``; torch is
only needed for :func:`coverage_map` of a network and :func:`effective_receptive_field`.
"""

from atrous.analysis.coverage import (
    CoverageMap,
    CoverageRequest,
    chain_counts_1d,
    chain_coverage,
    coverage_map,
    coverage_maps,
)
from atrous.analysis.erf import ERF, effective_receptive_field
from atrous.analysis.hdc import HDCReport, Schedule, design_schedules, hdc_check, m_values
from atrous.analysis.plots import plot_coverage, plot_erf, plot_schedules
from atrous.analysis.receptive_field import (
    Layer,
    RFRow,
    chain_layers,
    context_module_layers,
    receptive_field_table,
)

__all__ = [
    "ERF",
    "CoverageMap",
    "CoverageRequest",
    "HDCReport",
    "Layer",
    "RFRow",
    "Schedule",
    "chain_counts_1d",
    "chain_coverage",
    "chain_layers",
    "context_module_layers",
    "coverage_map",
    "coverage_maps",
    "design_schedules",
    "effective_receptive_field",
    "hdc_check",
    "m_values",
    "plot_coverage",
    "plot_erf",
    "plot_schedules",
    "receptive_field_table",
]
