"""Per-stage receptive fields and holes of a built segmentation model.

Works on any model shaped like ``atrous.models.Segmentor`` (duck-typed, nothing is
imported from the model zoo): ``model.backbone(x)`` returns ``{stage: feature_map}``,
``model.backbone.feature_info`` lists each stage's ``name``, ``stride``, ``dilation``
(per block) and ``convs`` (main-path ``ConvGeometry``), and
``model.classifier`` reads the maps named in ``model.head_inputs``.

Gridding is a property of the grid a dilated stage reads: at the image, every feature
position of a stride-8 map already covers a large patch, so no holes show. Each stage is
therefore also analysed against the previous stage's map (``source``), where a stage
whose blocks all use rates with a common factor leaves a lattice of unreached positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from atrous.analysis.coverage import CoverageMap, CoverageRequest, coverage_maps
from atrous.analysis.receptive_field import as_layer, receptive_field_table
from atrous.ops.schedule import ConvGeometry


@dataclass(frozen=True)
class StageRow:
    """One row of ``stage_report``.

    Attributes:
        name: stage name (``"head"`` for the classifier).
        stride: output stride of the stage.
        dilations: per-block rates (empty for the head).
        theoretical_rf: receptive field of the main-path convs (``receptive_field_table``),
            in image pixels; ``None`` when the stage lists no convs.
        measured_box: the exact coverage box at the image (clipped to the input size).
        image_hole_fraction: holes at the image inside that box.
        source: the stage whose map the grid columns are measured on.
        grid_hole_fraction: holes of this stage's centre output on ``source``'s map.
        grid_period: the lattice period of those holes, or ``None``.
        grid_coverage: the coverage map behind the grid columns (for plots).
        base: the last undilated stage at this stride before this one (the map the
            dilated stages build on), or ``None``.
        base_hole_fraction: holes of this stage's centre output on ``base``'s map:
            whether later layers filled the gaps earlier ones left (DRN's degridding
            layers do; a plain dilated stack does not).
    """

    name: str
    stride: int
    dilations: tuple[int, ...]
    theoretical_rf: int | None
    measured_box: tuple[int, ...]
    image_hole_fraction: float
    source: str | None
    grid_hole_fraction: float | None
    grid_period: tuple[int, ...] | None
    grid_coverage: CoverageMap | None = field(default=None, repr=False, compare=False)
    base: str | None = None
    base_hole_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stride": self.stride,
            "dilations": list(self.dilations),
            "theoretical_rf": self.theoretical_rf,
            "measured_box": list(self.measured_box),
            "image_hole_fraction": self.image_hole_fraction,
            "source": self.source,
            "grid_hole_fraction": self.grid_hole_fraction,
            "grid_period": None if self.grid_period is None else list(self.grid_period),
            "base": self.base,
            "base_hole_fraction": self.base_hole_fraction,
        }


class _HeadProbe(nn.Module):
    """Backbone features plus the head's logits at feature resolution, in one dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.classifier = model.classifier
        self.head_inputs = tuple(model.head_inputs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = dict(self.backbone(x))
        features["head"] = self.classifier(*(features[name] for name in self.head_inputs))
        return features


def _undilated_bases(infos: Sequence[Any]) -> list[str | None]:
    """For each stage, the last earlier undilated stage at the same stride, or ``None``.

    That stage's map is the grid the dilated stages build on, so holes measured against
    it tell whether later layers filled the gaps earlier ones left.
    """
    bases: list[str | None] = []
    for index, info in enumerate(infos):
        undilated = [
            other.name
            for other in infos[:index]
            if other.stride == info.stride and all(int(d) == 1 for d in other.dilation)
        ]
        bases.append(undilated[-1] if undilated else None)
    return bases


def _coverage_requests(
    infos: Sequence[Any], bases: Sequence[str | None], head_source: str
) -> list[CoverageRequest]:
    """Every coverage map of the report, in the order ``_backbone_rows`` reads them.

    Per stage: at the image, on the previous stage's map (all but the first), on its
    base (when it has one); then the head at the image and on ``head_source``.
    """
    requests = []
    for index, info in enumerate(infos):
        requests.append(CoverageRequest(output_index=info.name))
        if index:
            requests.append(CoverageRequest(output_index=info.name, source=infos[index - 1].name))
        if bases[index] is not None:
            requests.append(CoverageRequest(output_index=info.name, source=bases[index]))
    requests += [
        CoverageRequest(output_index="head"),
        CoverageRequest(output_index="head", source=head_source),
    ]
    return requests


def _backbone_rows(
    infos: Sequence[Any], bases: Sequence[str | None], maps: Iterator[CoverageMap]
) -> list[StageRow]:
    """One ``StageRow`` per backbone stage, consuming that stage's maps from ``maps``.

    The theoretical receptive field accumulates the main-path convs of every stage so far.
    """
    rows: list[StageRow] = []
    chain: list[ConvGeometry] = []
    previous: str | None = None
    for info, base in zip(infos, bases):
        chain += [as_layer(spec) for spec in getattr(info, "convs", ())]
        at_image = next(maps)
        on_grid = next(maps) if previous is not None else None
        on_base = next(maps) if base is not None else None
        rows.append(
            StageRow(
                name=info.name,
                stride=int(info.stride),
                dilations=tuple(int(d) for d in info.dilation),
                theoretical_rf=receptive_field_table(chain)[-1].size if chain else None,
                measured_box=at_image.box,
                image_hole_fraction=at_image.hole_fraction,
                source=previous,
                grid_hole_fraction=None if on_grid is None else on_grid.hole_fraction,
                grid_period=None if on_grid is None else on_grid.grid_period,
                grid_coverage=on_grid,
                base=base,
                base_hole_fraction=None if on_base is None else on_base.hole_fraction,
            )
        )
        previous = info.name
    return rows


def stage_report(model: nn.Module, input_size: int | Sequence[int] = (257, 257)) -> list[StageRow]:
    """Receptive field and holes per backbone stage, plus the head.

    The head row drops global (image) pooling, which reaches every pixel and would
    hide the holes of the dilated branches (see ``coverage_map(global_pooling=...)``).
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    backbone = getattr(model, "backbone", None)
    infos = list(getattr(backbone, "feature_info", []))
    if backbone is None or not infos:
        raise TypeError(
            f"{type(model).__name__} has no backbone.feature_info; stage_report needs a "
            "Segmentor-like model (see atrous.models.build_model)"
        )
    probe = _HeadProbe(model)
    head_source = probe.head_inputs[-1]
    bases = _undilated_bases(infos)
    # One linearised copy and one forward pass for every map of the report. Image
    # pooling is dropped: it reaches every pixel and would hide the dilated branches'
    # holes in the head row (it cannot affect the backbone rows).
    requests = _coverage_requests(infos, bases, head_source)
    maps = iter(coverage_maps(probe, input_size, requests, global_pooling="drop"))
    rows = _backbone_rows(infos, bases, maps)
    at_image, on_grid = next(maps), next(maps)
    rows.append(
        StageRow(
            name="head",
            stride=int(rows[-1].stride),
            dilations=(),
            theoretical_rf=None,
            measured_box=at_image.box,
            image_hole_fraction=at_image.hole_fraction,
            source=head_source,
            grid_hole_fraction=on_grid.hole_fraction,
            grid_period=on_grid.grid_period,
            grid_coverage=on_grid,
        )
    )
    return rows


# ----------------------------------------------------------------------------------------
# The dilated stages seen from one pixel (the web page's explorer).


@dataclass(frozen=True)
class StageCoverage:
    """Where one dilated stage looks from one pixel, on the feature map it reads.

    Attributes:
        name: the backbone stage, or ``"head"`` for the head's multi-rate module.
        title: what to call it: the stage name, or the module's class (``"ASPP"``).
        rates: its dilation rates (per block for a stage, per branch for ASPP).
        source: the feature map it reads: the previous stage, or the head's deep input.
        stride: that map's stride: each of its positions spans ``stride`` input pixels.
        coverage: path counts on the source map to the stage's output position over
            the pixel; zeros inside ``coverage.box`` are the stage's holes.
    """

    name: str
    title: str
    rates: tuple[int, ...]
    source: str
    stride: int
    coverage: CoverageMap = field(repr=False, compare=False)


def _rates_of(module: nn.Module) -> tuple[int, ...] | None:
    """The rates of a multi-rate module (ASPP's ``rates``, a context module's ``dilations``)."""
    for attribute in ("rates", "dilations"):
        rates = getattr(module, attribute, None)
        if isinstance(rates, (tuple, list)) and rates and all(isinstance(r, int) for r in rates):
            return tuple(rates)
    return None


def _head_module(probe: _HeadProbe) -> tuple[str, nn.Module, tuple[int, ...]] | None:
    """The first dilated multi-rate module of the head (ASPP, context module), if any."""
    for name, module in probe.named_modules():
        if not name.startswith("classifier"):
            continue
        rates = _rates_of(module)
        if rates is not None and max(rates) > 1:
            return name, module, rates
    return None


def dilated_stages_at(
    model: nn.Module, input_size: int | Sequence[int], pixel: Sequence[int]
) -> list[StageCoverage]:
    """Coverage of every dilated stage at the pixel ``(y, x)``, each on the map it reads.

    Gridding shows on the feature map a dilated stage reads, not at the image (see the
    module docstring), and it depends on where the pixel is: near a border the field is
    cut off. For each backbone stage with a rate above 1 this measures its output
    position over ``pixel`` against the previous stage's map, and for a head with a
    multi-rate module (ASPP, context module) that module against the head's deep input.
    Image pooling is dropped (it reaches every position and would hide the holes).

    Returns:
        One ``StageCoverage`` per dilated stage, in network order; empty for a model
        without ``backbone.feature_info`` (nothing to split into stages). The web
        page's receptive-field explorer draws these maps.
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    infos = list(getattr(getattr(model, "backbone", None), "feature_info", []))
    if not infos or not hasattr(model, "classifier") or not hasattr(model, "head_inputs"):
        return []
    probe = _HeadProbe(model)
    over = tuple(int(v) for v in pixel)
    # (name, title, rates, source, stride) of each dilated stage, and its map request.
    found: list[tuple[str, str, tuple[int, ...], str, int]] = []
    requests: list[CoverageRequest] = []
    for previous, info in pairwise(infos):
        rates = tuple(int(d) for d in info.dilation)
        if max(rates) > 1:
            found.append((info.name, info.name, rates, previous.name, int(previous.stride)))
            requests.append(
                CoverageRequest(output_index=info.name, source=previous.name, over=over)
            )
    head = _head_module(probe)
    if head is not None:
        name, module, rates = head
        deep = probe.head_inputs[0]
        stride = next(int(info.stride) for info in infos if info.name == deep)
        found.append(("head", type(module).__name__, rates, deep, stride))
        requests.append(CoverageRequest(output_index=name, source=deep, over=over))
    if not requests:
        return []
    maps = coverage_maps(probe, input_size, requests, global_pooling="drop")
    return [StageCoverage(*stage, coverage=coverage) for stage, coverage in zip(found, maps)]
