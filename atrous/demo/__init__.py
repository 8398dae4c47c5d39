"""The demo: ``atrous demo`` shows dilation, gridding and HDC on a real training run.

``run_demo`` generates the synthetic context dataset (``atrous.data.synthetic``),
trains four models with one budget through ``atrous.engine``, measures them with
``atrous.analysis`` and writes ``report.html``/``report.md`` (``atrous.demo.report``).
"""

from atrous.demo.runner import (
    DemoInterrupted,
    DemoModel,
    DemoResult,
    DemoSettings,
    ModelResult,
    choose_epochs,
    demo_models,
    results_dict,
    run_demo,
    time_step,
)

__all__ = [
    "DemoInterrupted",
    "DemoModel",
    "DemoResult",
    "DemoSettings",
    "ModelResult",
    "choose_epochs",
    "demo_models",
    "results_dict",
    "run_demo",
    "time_step",
]
