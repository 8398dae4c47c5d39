"""Split expressions: validation by drive and by time, from CamVid's frame names.

CamVid's SegNet ``val`` split is 101 frames of drive 0016E5, interleaved in time with
the 204 training frames of the same drive, so a model scored on it is scored on a
street it has already seen; its test split comes from drives (or parts of drives)
that training never saw. Every CamVid frame is named ``DRIVE_FRAME`` (``0001TP_006690``,
``0006R0_f00930``, ``0016E5_07959``), so splits that hold out a whole drive, or a block
of consecutive frames, can be built from the names alone. One string says which frames:

    SPEC := TERM (("+" | "-") TERM)*          read left to right: + adds, - removes
    TERM := NAME                              a split on disk: train, val, test, ...
          | drive:DRIVE[,DRIVE...]            every frame of these drives, in any split on disk
          | frames:DRIVE:[FIRST]..[END]       frames of DRIVE numbered FIRST <= n < END

Examples (the recommended CamVid selection recipe is the first pair)::

    train+val-drive:0006R0      train on 0001TP and 0016E5 (367 frames) ...
    drive:0006R0                ... and validate on drive 0006R0, a street never seen (101)
    train+val                   the final model: all 468 frames
    frames:0016E5:7000..        drive 0016E5 from frame 7000 on (a block later in time)
    train-frames:0016E5:7000..  train without that block
    drive:0001TP-test           drive 0001TP without test frames (when test is on disk)

Frame numbers are compared as integers (``f00930`` is 930, ``007950`` is 7950); ranges
are half-open, like Python's. Plain names keep their old meaning, so ``train`` and
``val`` read exactly the SegNet lists. This module is pure (no file access): it parses
specs and resolves them over a ``{split name: samples}`` pool that the dataset reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from atrous.data.io import DataError

Sample = tuple[Path, Path]

_NAME = re.compile(r"^\w+$")
_FRAME_NUMBER = re.compile(r"^[A-Za-z]*(\d+)$")
_FRAME_NAME = re.compile(r"^([A-Za-z0-9]+)_([A-Za-z]*\d+)$")

SPLIT_SYNTAX = (
    "NAME (a split on disk), drive:DRIVE[,DRIVE...], frames:DRIVE:[FIRST]..[END], "
    "joined by + (add) and - (remove), e.g. 'train+val-drive:0006R0'"
)


class SplitError(DataError):
    """A split spec is malformed or selects nothing; the message says what is valid.

    A ``DataError`` (hence a ``ValueError``), so every command that
    reports bad data reports a bad split the same way.
    """


class SplitOverlapError(SplitError):
    """A training and a validation split share frames (see ``check_split_pair``)."""


@dataclass(frozen=True)
class FrameName:
    """A CamVid frame name ``DRIVE_FRAME``: the drive and the frame's number in time."""

    drive: str
    number: int


def parse_frame_name(path: str | Path) -> FrameName:
    """Read drive and frame number from an image file name (``0006R0_f00930.png``).

    Raises:
        SplitError: the name is not ``DRIVE_FRAME``; drive splits need that layout.
    """
    stem = Path(path).stem
    match = _FRAME_NAME.match(stem)
    if match is None:
        raise SplitError(
            f"{path}: file name {stem!r} is not DRIVE_FRAME (e.g. 0006R0_f00930); "
            "drive: and frames: splits read the drive and frame number from the name"
        )
    number = _FRAME_NUMBER.match(match.group(2))
    assert number is not None  # the frame pattern above guarantees trailing digits
    return FrameName(drive=match.group(1), number=int(number.group(1)))


@dataclass(frozen=True)
class SplitTerm:
    """One term of a spec: a split name, a set of drives, or a frame range of one drive."""

    kind: Literal["split", "drive", "frames"]
    names: tuple[str, ...]
    first: int | None = None
    end: int | None = None

    def __str__(self) -> str:
        if self.kind == "split":
            return self.names[0]
        if self.kind == "drive":
            return "drive:" + ",".join(self.names)
        first = "" if self.first is None else str(self.first)
        end = "" if self.end is None else str(self.end)
        return f"frames:{self.names[0]}:{first}..{end}"

    def matches(self, frame: FrameName) -> bool:
        """Whether a frame belongs to this drive or frames term."""
        if frame.drive not in self.names:
            return False
        if self.first is not None and frame.number < self.first:
            return False
        return self.end is None or frame.number < self.end


@dataclass(frozen=True)
class SplitSpec:
    """A parsed spec: ``(sign, term)`` pairs applied left to right from an empty set."""

    text: str
    terms: tuple[tuple[Literal["+", "-"], SplitTerm], ...]

    @property
    def is_plain(self) -> bool:
        """True for a single split name such as ``train``: read exactly as before."""
        return len(self.terms) == 1 and self.terms[0][1].kind == "split"

    @property
    def split_names(self) -> tuple[str, ...]:
        """The plain split names the spec mentions."""
        return tuple(t.names[0] for _, t in self.terms if t.kind == "split")

    @property
    def drives(self) -> tuple[str, ...]:
        """The drives its drive: and frames: terms mention."""
        return tuple(d for _, t in self.terms if t.kind != "split" for d in t.names)


def _parse_frame_number(text: str, spec: str) -> int | None:
    if not text:
        return None
    match = _FRAME_NUMBER.match(text)
    if match is None:
        raise SplitError(
            f"split {spec!r}: frame number {text!r} is not a number (e.g. 7950 or f00930)"
        )
    return int(match.group(1))


def _parse_term(text: str, spec: str) -> SplitTerm:
    kind, colon, rest = text.partition(":")
    if not colon:
        if not _NAME.match(text):
            raise SplitError(
                f"split {spec!r}: {text!r} is not a split name; expected {SPLIT_SYNTAX}"
            )
        return SplitTerm("split", (text,))
    if kind == "drive":
        drives = tuple(d.strip() for d in rest.split(","))
        if not all(_NAME.match(d) for d in drives):
            raise SplitError(f"split {spec!r}: {text!r}; expected drive:DRIVE[,DRIVE...]")
        return SplitTerm("drive", drives)
    if kind == "frames":
        drive, colon, bounds = rest.partition(":")
        first, dots, end = bounds.partition("..")
        if not (colon and dots and _NAME.match(drive)):
            raise SplitError(
                f"split {spec!r}: {text!r}; expected frames:DRIVE:[FIRST]..[END], "
                "e.g. frames:0016E5:7000.. (frames 7000 and later)"
            )
        term = SplitTerm(
            "frames",
            (drive,),
            _parse_frame_number(first.strip(), spec),
            _parse_frame_number(end.strip(), spec),
        )
        if term.first is not None and term.end is not None and term.first >= term.end:
            raise SplitError(f"split {spec!r}: {text!r} is an empty range; FIRST must be below END")
        return term
    raise SplitError(
        f"split {spec!r}: unknown term kind {kind!r} in {text!r}; expected {SPLIT_SYNTAX}"
    )


def parse_split(text: str) -> SplitSpec:
    """Parse a split spec (see the module docstring); syntax only, no file is read.

    Raises:
        SplitError: naming the spec, the bad part and the accepted syntax.
    """
    if not isinstance(text, str) or not text.strip():
        raise SplitError(f"split {text!r} is empty; expected {SPLIT_SYNTAX}")
    pieces = re.split(r"([+-])", text.strip())
    if not pieces[0].strip():
        raise SplitError(f"split {text!r} starts with an operator; expected a term first")
    terms: list[tuple[Literal["+", "-"], SplitTerm]] = []
    signs = ["+", *pieces[1::2]]
    for sign, piece in zip(signs, pieces[0::2]):
        if not piece.strip():
            raise SplitError(f"split {text!r}: {sign!r} has no term after it")
        terms.append(("+" if sign == "+" else "-", _parse_term(piece.strip(), text)))
    return SplitSpec(text=text, terms=tuple(terms))


def _frame(sample: Sample) -> FrameName:
    return parse_frame_name(sample[0])


def pool_drives(pool: Mapping[str, Sequence[Sample]]) -> dict[str, int]:
    """Frame count per drive over every split of the pool, drives in sorted order."""
    counts: dict[str, int] = {}
    for samples in pool.values():
        for sample in samples:
            drive = _frame(sample).drive
            counts[drive] = counts.get(drive, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class DriveSummary:
    """One drive of a pool: how many frames, in which splits, and its frame numbers."""

    drive: str
    frames: int
    splits: dict[str, int]
    first_frame: int
    last_frame: int


def summarize_drives(pool: Mapping[str, Sequence[Sample]]) -> list[DriveSummary]:
    """One ``DriveSummary`` per drive of the pool, sorted by drive name."""
    by_drive: dict[str, list[tuple[str, int]]] = {}
    for split, samples in pool.items():
        for sample in samples:
            frame = _frame(sample)
            by_drive.setdefault(frame.drive, []).append((split, frame.number))
    summaries = []
    for drive, frames in sorted(by_drive.items()):
        splits: dict[str, int] = {}
        for split, _ in frames:
            splits[split] = splits.get(split, 0) + 1
        numbers = [n for _, n in frames]
        summaries.append(DriveSummary(drive, len(frames), splits, min(numbers), max(numbers)))
    return summaries


def drives_table(summaries: Sequence[DriveSummary]) -> str:
    """A plain-text table of drives: frames, frames per split, first and last frame."""
    lines = [f"{'drive':<10}{'frames':>7}  {'first':>6}  {'last':>6}  splits"]
    for s in summaries:
        splits = ", ".join(f"{name} {count}" for name, count in s.splits.items())
        lines.append(f"{s.drive:<10}{s.frames:>7}  {s.first_frame:>6}  {s.last_frame:>6}  {splits}")
    return "\n".join(lines)


def describe_pool(pool: Mapping[str, Sequence[Sample]]) -> str:
    """The splits and drives that exist, for error messages: what a user may write."""
    names = ", ".join(pool) or "none"
    try:
        drives = pool_drives(pool)
    except SplitError:
        return f"splits on disk: {names} (file names are not DRIVE_FRAME: no drive splits)"
    if not drives:
        return f"splits on disk: {names}"
    listed = ", ".join(f"{d} ({n} frames)" for d, n in drives.items())
    example = next(iter(drives))
    return (
        f"splits on disk: {names}; drives: {listed}, selected from every split on disk by "
        f"drive:{example} or frames:{example}:FIRST..END, combined with + and -, "
        f"e.g. '{'+'.join(pool)}-drive:{example}'"
    )


def _select_term(term: SplitTerm, pool: Mapping[str, Sequence[Sample]], spec: str) -> list[Sample]:
    if term.kind == "split":
        name = term.names[0]
        if name not in pool:
            raise SplitError(f"split {spec!r}: no split {name!r}; {describe_pool(pool)}")
        return list(pool[name])
    drives = pool_drives(pool)
    unknown = [d for d in term.names if d not in drives]
    if unknown:
        raise SplitError(
            f"split {spec!r}: no drive {', '.join(map(repr, unknown))}; {describe_pool(pool)}"
        )
    selected = [s for samples in pool.values() for s in samples if term.matches(_frame(s))]
    if not selected:
        numbers = sorted(
            _frame(s).number for samples in pool.values() for s in samples
            if _frame(s).drive == term.names[0]
        )  # fmt: skip
        raise SplitError(
            f"split {spec!r}: {term} selects no frame; drive {term.names[0]} has frames "
            f"{numbers[0]}..{numbers[-1]} (FIRST is included, END is not)"
        )
    return selected


def resolve_split(spec: str | SplitSpec, pool: Mapping[str, Sequence[Sample]]) -> list[Sample]:
    """The samples a spec selects from a ``{split name: samples}`` pool.

    Order is deterministic: terms in the order written, each in its split's list order.
    A sample in two terms of a union appears once (identity = image path).

    Raises:
        SplitError: an unknown split or drive (listing those that exist), a term that
            selects nothing, or a spec whose result is empty.
    """
    parsed = parse_split(spec) if isinstance(spec, str) else spec
    chosen: dict[Path, Sample] = {}
    for sign, term in parsed.terms:
        selected = _select_term(term, pool, parsed.text)
        if sign == "+":
            for sample in selected:
                chosen.setdefault(sample[0], sample)
        else:
            for sample in selected:
                chosen.pop(sample[0], None)
    if not chosen:
        raise SplitError(f"split {parsed.text!r} selects no frame; {describe_pool(pool)}")
    return list(chosen.values())


def shared_frames(a: Iterable[Sample], b: Iterable[Sample]) -> list[str]:
    """Image file names present in both sample lists (sorted): frames seen twice."""
    names_a = {Path(s[0]).name for s in a}
    return sorted(names_a & {Path(s[0]).name for s in b})


@dataclass(frozen=True)
class DriveFold:
    """One leave-one-drive-out fold: train on ``train_split``, validate on ``val_split``."""

    drive: str
    train_split: str
    val_split: str


def drive_folds(
    drives: Sequence[str],
    pool: Sequence[str] = ("train", "val"),
    splits_on_disk: Sequence[str] | None = None,
) -> list[DriveFold]:
    """Leave-one-drive-out folds over the splits in ``pool``: one fold per drive.

    The validation parts of the folds partition the pool: every frame is validated on
    exactly once, always by a model that never saw its drive. ``drive:X`` reads every
    split on disk, so when ``splits_on_disk`` holds splits outside the pool (a ``test``
    split), the validation part is written as the pool minus the other drives instead.
    """
    if not pool:
        raise SplitError("drive_folds: the pool names no split; expected e.g. ('train', 'val')")
    if len(drives) < 2:
        raise SplitError(f"drive_folds: {len(drives)} drive(s) {list(drives)}; need at least 2")
    base = "+".join(pool)
    exact = splits_on_disk is None or set(splits_on_disk) <= set(pool)
    folds = []
    for drive in drives:
        others = ",".join(d for d in drives if d != drive)
        val_split = f"drive:{drive}" if exact else f"{base}-drive:{others}"
        folds.append(DriveFold(drive, train_split=f"{base}-drive:{drive}", val_split=val_split))
    return folds
