"""Fuzzing the image readers: mutated PNG, JPEG, TIFF, WebP, BMP, GIF and DDS bytes
into ``read_image``, the dataset reader and the service's upload decoder. Nothing but
the documented error may escape (ImageError / DataError / UploadError), whatever the
decoder inside raises. A short run here; ``benchmarks/fuzz_decoders.py`` runs 100,000."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atrous.data import DataError, build_dataset
from atrous.data.fuzz import FORMATS, MUTATIONS, base_files, mutate
from atrous.data.io import ImageError, read_image
from tests.data.helpers import write_folder_dataset

BASES = base_files()
MAX_PIXELS = 1_000_000  # a header claiming more is refused before decoding

mutations = st.builds(
    lambda name, kinds, seed: _apply(BASES[name], kinds, seed),
    st.sampled_from(FORMATS),
    st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
)


def _apply(data: bytes, kinds: list[str], seed: int) -> bytes:
    rng = random.Random(seed)
    for kind in kinds:
        data = mutate(data, kind, rng)
    return data


def test_every_base_file_decodes() -> None:
    for name, data in BASES.items():
        assert read_image(data, name=name).shape == (12, 16, 3), name


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=mutations)
def test_read_image_raises_only_image_error(data: bytes) -> None:
    try:
        rgb = read_image(data, max_pixels=MAX_PIXELS, name="fuzzed")
    except ImageError as error:
        assert error.path == "fuzzed"
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=mutations)
def test_service_upload_decoder_raises_only_upload_error(data: bytes) -> None:
    pytest.importorskip("fastapi")
    from atrous.serve.uploads import UploadError, decode_image, header_size

    try:
        header_size(data)
        decode_image(data, max_pixels=MAX_PIXELS)
    except UploadError as error:
        assert 400 <= error.status < 500


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=mutations)
def test_dataset_reader_raises_only_data_error(tmp_path: Path, data: bytes) -> None:
    root = tmp_path / "data"
    if not root.exists():
        write_folder_dataset(root, splits={"train": 1}, size=(16, 12))
    image = next((root / "images" / "train").glob("*.png"))
    image.write_bytes(data)
    dataset = build_dataset("folder", root, split="train")
    try:
        dataset[0]
    except DataError as error:
        assert image.name in str(error)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("name", FORMATS)
def test_uploads_of_a_few_bytes_are_a_4xx(name: str, length: int) -> None:
    """Found by the long fuzzing run: some Pillow plugins' header probes unpack 4 bytes
    and raised struct.error on shorter uploads (a 500 in the service)."""
    pytest.importorskip("fastapi")
    from atrous.serve.uploads import UploadError, decode_image, header_size

    data = BASES[name][:length]
    assert header_size(data) is None
    with pytest.raises(UploadError) as caught:
        decode_image(data, max_pixels=MAX_PIXELS)
    assert 400 <= caught.value.status < 500
