"""Receptive field, exact coverage (gridding) maps, the HDC rule, schedule design and
the effective receptive field, with their plots.

Reads the dilation schedule as the one value networks are built from
(``atrous.ops.DilationSchedule``): ``hdc_check(schedule)``,
``receptive_field_table(schedule)`` and ``check_stages(schedule, layout, output_stride)``
need no network. Imports nothing from ``atrous.engine``, ``atrous.data`` or
``atrous.serve``; torch is only needed for ``coverage_map`` of a network and ``effective_receptive_field``.
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
from atrous.analysis.hdc import (
    DesignedSchedule,
    HDCReport,
    StageCheck,
    check_stages,
    design_schedules,
    hdc_check,
    m_values,
    schedule_rates,
)
from atrous.analysis.plots import plot_coverage, plot_erf, plot_schedules
from atrous.analysis.receptive_field import (
    RFRow,
    chain_layers,
    context_module_layers,
    receptive_field_table,
)
from atrous.ops.schedule import ConvGeometry

__all__ = [
    "ERF",
    "ConvGeometry",
    "CoverageMap",
    "CoverageRequest",
    "DesignedSchedule",
    "HDCReport",
    "RFRow",
    "StageCheck",
    "chain_counts_1d",
    "chain_coverage",
    "chain_layers",
    "check_stages",
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
    "schedule_rates",
]
