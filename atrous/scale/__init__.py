"""atrous beyond one machine: batch prediction on Ray Data, serving replicas on Ray Serve.

Needs the ``ray`` extra (``pip install 'atrous[ray]'``); nothing else in atrous imports
this package, so ``make demo`` and the local ``atrous predict`` / ``atrous serve`` never
need Ray. Multi-node training needs no code here: ``atrous train`` under
``torchrun --nnodes N`` already joins the process group (see ``atrous.engine.distributed``).

- ``atrous.scale.ray_predict``: ``atrous predict --ray [ADDRESS]``, or
  ``atrous.scale.ray_predict.predict_with_ray`` from Python.
- ``atrous.scale.ray_serve``: ``python -m atrous.scale.ray_serve --model NAME
  --replicas 2``, the app of ``atrous serve`` as a Ray Serve deployment.
"""

from __future__ import annotations

RAY_MISSING = "this needs the ray extra: pip install 'atrous[ray]'"
