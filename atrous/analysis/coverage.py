"""Exact coverage maps: how many paths lead from each input pixel to one output.

The method linearises a copy of the network so that its input gradient *is* a path
count:

* every convolution (1-, 2-, 3-d, transposed, grouped, depthwise) gets all-ones
  weights and no bias;
* activations, normalisation layers and dropout become the identity;
* max-pooling becomes *sum*-pooling over the same window (every input in the window is
  one path), adaptive max-pooling becomes adaptive average pooling;
* average pooling and interpolation keep their own coefficients, because they are the
  fixed linear maps of the architecture;
* the copy runs in float64 on an all-ones input and the gradient of the chosen output
  location (summed over channels) is read at the input.

With all-ones weights every channel of a tensor carries the same map, which allows two
equivalent ways of running the linearised copy:

``"collapsed"`` (the fast default)
    each convolution first sums its input over channels and then applies a 1-channel
    all-ones kernel, so every tensor has one channel. A ResNet-50 becomes as cheap as a
    stack of single-channel convolutions.
``"full"`` (the reference)
    the real channel structure, with weights ``1`` applied to ``x / m`` where ``m`` is
    the number of output channels per group. Backpropagation sums ``m`` identical
    integer gradients and divides by ``m``, so every channel's gradient is the spatial
    path count, exactly. Used automatically when the network mixes channels and space
    (linear layers, pixel shuffle) or when the collapsed run fails.

In both, branches that are added (residual connections) *or* concatenated and then
convolved (ASPP) contribute their path counts additively, so ``counts[p]`` is the number
of distinct spatial paths from input pixel ``p`` to the output location.

Exactness. For networks of convolutions, max-pools, additions and concatenations the
counts are integers and float64 holds them exactly up to ``2**53`` (about 9e15); deep
networks exceed that, and the counts are then exact to a relative 1e-16. Holes are
always exact: every coefficient is non-negative, so nothing cancels, and a pixel no path
reaches gets exactly ``0.0``. Average pooling and bilinear interpolation make the counts
rational (path counts weighted by the pooling/interpolation coefficients); after a pixel
shuffle (DUC) a count is the mean over the ``r^2`` sub-pixel channels. A network
whose ``forward`` applies non-linear *functions* (not modules) other than ReLU is not
linearised by this copy; ReLU is harmless because all values stay positive.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Location = tuple[int, ...]


@dataclass(frozen=True)
class CoverageMap:
    """Path counts from every input position to one output position, and their summary.

    Attributes:
        counts: float64 array of the input's spatial shape (``H x W`` for images);
            ``counts[p]`` is the number of paths from input position ``p``.
        location: the output position analysed, in output coordinates.
        box: bounding box of the reached positions, half-open, ``(y0, y1, x0, x1)`` for
            2-D (``(x0, x1)`` for 1-D): ``counts[y0:y1, x0:x1]`` is the receptive field.
        hole_fraction: share of the positions inside ``box`` that no path reaches.
        uniformity: ``1 / (1 + cv)`` where ``cv`` is the coefficient of variation of the
            non-zero counts inside ``box``; 1 means every reached pixel is reached
            equally often, values near 0 mean a few pixels dominate.
        count_cv: that coefficient of variation (std / mean of the non-zero counts).
        is_grid: the holes form a regular lattice (gridding): either every reached
            position lies on a coarser lattice (the gcd of the reached offsets from the
            box corner is > 1 along some axis, as with rates 2,2,2 or ASPP branches),
            or the reached/hole pattern inside ``box`` repeats with a period along
            every axis (as with rates 1,2,9).
        grid_period: that lattice spacing or period per axis (1 = none along the
            axis), or ``None`` when the holes are irregular.
        method: ``"collapsed"``, ``"full"`` or ``"chain"`` (analytic, see
            ``chain_coverage``).
    """

    counts: np.ndarray
    location: Location
    box: tuple[int, ...]
    hole_fraction: float
    uniformity: float
    count_cv: float
    is_grid: bool
    grid_period: tuple[int, ...] | None
    method: str = "full"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def box_shape(self) -> tuple[int, ...]:
        """Extent of the receptive-field box per axis."""
        return tuple(self.box[2 * d + 1] - self.box[2 * d] for d in range(self.counts.ndim))

    @property
    def holes(self) -> np.ndarray:
        """Boolean mask over ``counts``: inside the box and never reached."""
        mask = np.zeros(self.counts.shape, dtype=bool)
        window = self._window()
        mask[window] = self.counts[window] == 0
        return mask

    def _window(self) -> tuple[slice, ...]:
        return tuple(slice(self.box[2 * d], self.box[2 * d + 1]) for d in range(self.counts.ndim))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (without the counts array)."""
        return {
            "location": list(self.location),
            "box": list(self.box),
            "box_shape": list(self.box_shape),
            "hole_fraction": self.hole_fraction,
            "uniformity": self.uniformity,
            "count_cv": self.count_cv,
            "is_grid": self.is_grid,
            "grid_period": None if self.grid_period is None else list(self.grid_period),
            "method": self.method,
        }


def _period_along(mask: np.ndarray, axis: int) -> int | None:
    """Smallest shift ``p <= n // 2`` under which ``mask`` is invariant along ``axis``."""
    n = mask.shape[axis]
    for p in range(1, n // 2 + 1):
        head = np.take(mask, range(p, n), axis=axis)
        tail = np.take(mask, range(n - p), axis=axis)
        if np.array_equal(head, tail):
            return p
    return None


def _projection(mask: np.ndarray, axis: int) -> np.ndarray:
    """Along ``axis``: is any position of that slice set?"""
    other = tuple(a for a in range(mask.ndim) if a != axis)
    return mask.any(axis=other) if other else mask


def summarize_counts(
    counts: np.ndarray, location: Sequence[int], *, method: str = "full"
) -> CoverageMap:
    """Box, hole fraction, uniformity and grid detection for a counts array."""
    counts = np.asarray(counts, dtype=np.float64)
    if not np.all(np.isfinite(counts)):
        raise FloatingPointError(
            "coverage counts overflowed float64; the network is too deep for plain path "
            "counting (open an issue with the model)"
        )
    reached = counts != 0
    location = tuple(int(v) for v in location)
    if not reached.any():
        empty = tuple(0 for _ in range(2 * counts.ndim))
        return CoverageMap(counts, location, empty, 0.0, 0.0, 0.0, False, None, method)
    box: list[int] = []
    for axis in range(counts.ndim):
        hit = np.nonzero(_projection(reached, axis))[0]
        box += [int(hit[0]), int(hit[-1]) + 1]
    window = tuple(slice(box[2 * d], box[2 * d + 1]) for d in range(counts.ndim))
    inside = reached[window]
    hole_fraction = float(1.0 - inside.mean())
    values = counts[window][inside]
    count_cv = float(values.std() / values.mean()) if values.size else 0.0
    periods: tuple[int, ...] | None = None
    is_grid = False
    if hole_fraction > 0:
        # Gridding proper: every reached position lies on a coarser lattice (the gcd of
        # the reached offsets along some axis is > 1), e.g. unions of dilated branches.
        lattice = tuple(
            int(np.gcd.reduce(np.nonzero(_projection(inside, axis))[0]))
            for axis in range(inside.ndim)
        )
        if any(g > 1 for g in lattice):
            periods = tuple(max(1, g) for g in lattice)
            is_grid = True
        else:
            # Otherwise a pattern of holes that repeats with a period along every axis.
            found = [_period_along(inside, axis) for axis in range(inside.ndim)]
            if all(p is not None for p in found):
                periods = tuple(int(p) for p in found)  # type: ignore[arg-type]
                is_grid = any(p > 1 for p in periods)
    return CoverageMap(
        counts=counts,
        location=location,
        box=tuple(box),
        hole_fraction=hole_fraction,
        uniformity=1.0 / (1.0 + count_cv),
        count_cv=count_cv,
        is_grid=is_grid,
        grid_period=periods,
        method=method,
    )


# ----------------------------------------------------------------------------------------
# Analytic coverage of a chain of stride-1 dilated convolutions.


def chain_counts_1d(rates: Sequence[int], kernel_size: int | Sequence[int] = 3) -> np.ndarray:
    """Path counts of a 1-D chain of stride-1 dilated convs, as offsets -R..R.

    A chain of convolutions is the convolution of their (dilated) kernels, so the counts
    are the coefficients of ``prod_i (1 + z^r_i + ... + z^((k_i-1) r_i))``. Integers,
    exact (int64 arithmetic; overflow raises). ``kernel_size`` is one size for every
    layer or one per layer (a 1x1 layer adds no spread).
    """
    sizes = (
        [int(kernel_size)] * len(rates)
        if isinstance(kernel_size, int)
        else [int(k) for k in kernel_size]
    )
    if len(sizes) != len(rates):
        raise ValueError(f"got {len(rates)} rates but {len(sizes)} kernel sizes")
    counts = np.ones(1, dtype=np.int64)
    for rate, size in zip(rates, sizes):
        rate = int(rate)
        if rate < 1:
            raise ValueError(f"rates must be >= 1, got {list(rates)}")
        if size < 1:
            raise ValueError(f"kernel sizes must be >= 1, got {sizes}")
        kernel = np.zeros(rate * (size - 1) + 1, dtype=np.int64)
        kernel[::rate] = 1
        counts = np.convolve(counts, kernel)
        if counts.min() < 0:
            raise OverflowError(f"path counts of {list(rates)} overflow int64")
    return counts


def chain_coverage(
    rates: Sequence[int], kernel_size: int | Sequence[int] = 3, *, dims: int = 2
) -> CoverageMap:
    """Coverage of the centre output of a chain of stride-1 ``k x k`` dilated convs.

    The 2-D counts are the outer product of the 1-D counts (the kernels are separable
    when all weights are one), computed analytically without a network. The input is
    exactly the receptive field, so nothing is lost to image borders.

    Example:
        ```python
        from atrous.analysis import chain_coverage

        for rates in ([2, 2, 2], [1, 2, 5]):
            coverage = chain_coverage(rates)
            print(rates, coverage.box_shape, f"{coverage.hole_fraction:.0%} holes")
        # [2, 2, 2] (13, 13) 71% holes
        # [1, 2, 5] (17, 17) 0% holes
        ```
    """
    line = chain_counts_1d(rates, kernel_size).astype(np.float64)
    counts = line
    for _ in range(dims - 1):
        counts = np.multiply.outer(counts, line)
    centre = (line.size // 2,) * dims
    return summarize_counts(counts, centre, method="chain")


# ----------------------------------------------------------------------------------------
# Linearising a torch network.


def _linearise(model: Any, *, collapsed: bool, global_pooling: str) -> Any:
    """A float64 copy of ``model`` whose input gradient counts paths (see module doc)."""
    import torch
    from torch import nn

    from atrous.analysis import _linear_modules as lm

    if not isinstance(model, nn.Module):
        return model
    # Parameters and buffers of layers that get replaced are not needed: copying a
    # ResNet-50's weights would cost more than the whole analysis.
    memo: dict[int, Any] = {}
    for module in model.modules():
        if (
            lm.linear_replacement(module, collapsed=collapsed, global_pooling=global_pooling)
            is not None
        ):
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                memo[id(tensor)] = torch.empty(0)
    net = copy.deepcopy(model, memo)

    def replace(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            new = lm.linear_replacement(child, collapsed=collapsed, global_pooling=global_pooling)
            if new is not None:
                setattr(parent, name, new)
            else:
                replace(child)

    top = lm.linear_replacement(net, collapsed=collapsed, global_pooling=global_pooling)
    if top is not None:
        net = top
    else:
        replace(net)
    net = net.to(torch.float64)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval()


def _select_output(output: Any, output_index: Any) -> Any:
    import torch

    if isinstance(output, dict):
        key = "out" if output_index is None else output_index
        if key not in output:
            raise KeyError(
                f"the model returned a dict with keys {sorted(output)}; pass output_index= "
                f"one of them (looked for {key!r})"
            )
        return output[key]
    if isinstance(output, (tuple, list)):
        return output[0 if output_index is None else output_index]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__}, expected a tensor")
    return output


def _needs_full(model: Any) -> bool:
    from torch import nn

    if not isinstance(model, nn.Module):
        return True
    mixing = (nn.Linear, nn.Bilinear, nn.PixelUnshuffle, nn.ChannelShuffle)
    mixing += (nn.MultiheadAttention, nn.Flatten, nn.Unflatten)
    return any(isinstance(m, mixing) for m in model.modules())


@dataclass(frozen=True)
class CoverageRequest:
    """One map to compute in ``coverage_maps``: which output, where, from which source.

    Attributes:
        output_index: a key of the dict ``forward`` returns, an index into a returned
            tuple, or a submodule name (that module's output, e.g. a head's ASPP).
        source: count paths from this tensor instead of the input (a submodule name or a
            key of the returned dict).
        location: output position, in output coordinates; default the centre.
        over: instead of ``location``, an *input* position: the output position whose
            cell contains it, ``floor((p + 0.5) * out / in)`` per axis. A pixel clicked
            on the image names one position on every feature map this way.
    """

    output_index: Any = None
    source: str | None = None
    location: Location | None = None
    over: Location | None = None


def _output_location(
    request: CoverageRequest, spatial: tuple[int, ...], input_size: tuple[int, ...]
) -> Location:
    """The output position a request asks for, checked against the output's shape."""
    if request.over is not None:
        if len(request.over) != len(input_size) or any(
            not 0 <= p < n for p, n in zip(request.over, input_size)
        ):
            raise ValueError(f"over={tuple(request.over)} is outside the input {input_size}")
        location = tuple(
            min(s - 1, int((p + 0.5) * s // n))
            for p, s, n in zip(request.over, spatial, input_size)
        )
    elif request.location is None:
        location = tuple(s // 2 for s in spatial)
    else:
        location = tuple(int(v) for v in request.location)
    if len(location) != len(spatial) or any(not 0 <= v < s for v, s in zip(location, spatial)):
        raise ValueError(f"location {location} is outside the output of spatial shape {spatial}")
    return location


def _run(
    model: Any,
    input_size: tuple[int, ...],
    requests: Sequence[CoverageRequest],
    *,
    in_channels: int,
    collapsed: bool,
    global_pooling: str,
) -> list[tuple[np.ndarray, Location]]:
    """One forward pass of the linearised copy, one backward pass per request."""
    import torch

    net = _linearise(model, collapsed=collapsed, global_pooling=global_pooling)
    channels = 1 if collapsed else in_channels
    x = torch.ones((1, channels, *input_size), dtype=torch.float64, requires_grad=True)
    captured: dict[str, Any] = {}
    handles = []
    if isinstance(net, torch.nn.Module):
        modules = dict(net.named_modules())
        wanted = {r.source for r in requests if r.source is not None}
        wanted |= {r.output_index for r in requests if isinstance(r.output_index, str)}
        for name in wanted:
            if name in modules:

                def hook(_module: Any, _inputs: Any, output: Any, name: str = name) -> None:
                    captured[name] = output

                handles.append(modules[name].register_forward_hook(hook))
    results = []
    try:
        with torch.enable_grad():
            raw = net(x)
            for index, request in enumerate(requests):
                key = request.output_index
                named_module = isinstance(key, str) and not (isinstance(raw, dict) and key in raw)
                if named_module and key in captured:
                    out = captured[key]
                else:
                    out = _select_output(raw, key)
                source = request.source
                if source is None:
                    src = x
                elif source in captured:
                    src = captured[source]
                elif isinstance(raw, dict) and source in raw:
                    src = raw[source]
                else:
                    keys = sorted(raw) if isinstance(raw, dict) else []
                    raise KeyError(
                        f"source {source!r} is neither a submodule name nor a key of the "
                        f"model's output dict {keys}"
                    )
                location = _output_location(request, tuple(out.shape[2:]), input_size)
                seed = out[(0, slice(None), *location)].sum()
                (grad,) = torch.autograd.grad(
                    seed, src, allow_unused=True, retain_graph=index < len(requests) - 1
                )
                if grad is None:
                    counts = np.zeros(tuple(src.shape[2:]), dtype=np.float64)
                else:
                    counts = grad[0].mean(dim=0).detach().cpu().numpy().astype(np.float64)
                results.append((counts, location))
    finally:
        for handle in handles:
            handle.remove()
    return results


def coverage_maps(
    model: Any,
    input_size: int | Sequence[int],
    requests: Sequence[CoverageRequest],
    *,
    in_channels: int = 3,
    method: str = "auto",
    global_pooling: str = "keep",
) -> list[CoverageMap]:
    """Several coverage maps from one linearised copy and one forward pass.

    Same semantics as ``coverage_map`` for every request; cheaper when one network
    is analysed at several outputs or against several sources (a per-stage report).
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    input_size = tuple(int(s) for s in input_size)
    if method not in ("auto", "collapsed", "full"):
        raise ValueError(f"method must be 'auto', 'collapsed' or 'full', got {method!r}")
    if global_pooling not in ("keep", "drop"):
        raise ValueError(f"global_pooling must be 'keep' or 'drop', got {global_pooling!r}")
    kwargs = dict(in_channels=in_channels, global_pooling=global_pooling)
    use_collapsed = method == "collapsed" or (method == "auto" and not _needs_full(model))
    if use_collapsed:
        try:
            results = _run(model, input_size, requests, collapsed=True, **kwargs)
            return [summarize_counts(c, loc, method="collapsed") for c, loc in results]
        except (RuntimeError, ValueError) as error:
            if method == "collapsed":
                raise
            logger.debug("collapsed coverage failed (%s); using the full network", error)
    results = _run(model, input_size, requests, collapsed=False, **kwargs)
    return [summarize_counts(c, loc, method="full") for c, loc in results]


def coverage_map(
    model: Any,
    input_size: int | Sequence[int] = (257, 257),
    location: Sequence[int] | None = None,
    *,
    in_channels: int = 3,
    output_index: Any = None,
    source: str | None = None,
    method: str = "auto",
    global_pooling: str = "keep",
) -> CoverageMap:
    """Exact number of paths from each input position to one output position.

    Args:
        model: any ``torch.nn.Module`` (residual additions, concatenation, parallel
            branches, pooling, interpolation are all fine) or a callable; a plain
            callable is not linearised and should already be linear and positive.
            Weights of the replaced layers are never read, so a model built under
            ``torch.device("meta")`` works (and skips the cost of initialising it).
        input_size: spatial size of the input, ``(H, W)`` for images, ``(L,)`` for 1-D.
        location: output position to analyse (output coordinates); default the centre.
        in_channels: input channels the network expects (``"full"`` method).
        output_index: which output when ``forward`` returns a dict (default ``"out"``)
            or a tuple (default 0); e.g. a stage name for a backbone.
        source: count paths from this tensor instead of the input: a submodule name
            (its output) or a key of the returned dict, e.g. a backbone stage. Gridding
            is a property of the grid a dilated stage reads, so this is how a stage's
            holes are seen on the feature map before it.
        method: ``"auto"`` (collapsed, falling back to full), ``"collapsed"``, ``"full"``.
        global_pooling: ``"keep"`` or ``"drop"``. An image-pooling branch (adaptive
            pooling to one value) reaches every pixel with weight ``1 / (H W)``; that is
            true, but it hides the holes of the dilated branches, so ``"drop"`` zeroes it.

    Returns:
        A ``CoverageMap`` (counts in the source's spatial shape).

    Example:
        ```python
        import torch

        import atrous
        from atrous.analysis import coverage_map

        with torch.device("meta"):  # coverage never reads the weights
            model = atrous.build_model("dilated_net", num_classes=3, rates=(4, 4, 4, 4))
        grid = coverage_map(model, input_size=(97, 97), source="backbone.stem")
        print(f"{grid.hole_fraction:.0%} of the body's field on the stem's map is holes, "
              f"period {grid.grid_period}")
        ```
    """
    location = None if location is None else tuple(int(v) for v in location)
    request = CoverageRequest(output_index=output_index, source=source, location=location)
    (coverage,) = coverage_maps(
        model,
        input_size,
        [request],
        in_channels=in_channels,
        method=method,
        global_pooling=global_pooling,
    )
    return coverage
