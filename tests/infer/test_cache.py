"""The derived-file cache without any runtime: weights digests, the folder a cache goes
to, and records that refuse a changed, truncated or foreign file without raising."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from atrous.infer.cache import (
    artifact_folder,
    read_record,
    record_problem,
    tensors_digest,
    verify_record,
    weights_digest,
    write_record,
)
from atrous.models import build_model


@pytest.fixture
def model() -> torch.nn.Module:
    return build_model("dilated_net", num_classes=3, rates=(1, 2), width=8).eval()


def test_a_deep_copy_has_the_same_digest(model: torch.nn.Module) -> None:
    digest = weights_digest(model)
    assert digest == weights_digest(copy.deepcopy(model))
    assert len(digest) == 16 and int(digest, 16) >= 0


def test_one_changed_weight_or_buffer_changes_the_digest(model: torch.nn.Module) -> None:
    digest = weights_digest(model)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-6
    assert weights_digest(changed) != digest
    buffered = copy.deepcopy(model)
    name, buffer = next((n, b) for n, b in buffered.named_buffers() if "running_mean" in n)
    buffer[0] += 1.0
    assert weights_digest(buffered) != digest, name


def test_the_digest_sees_dtype_and_shape_not_only_bytes() -> None:
    ones = torch.ones(4, dtype=torch.int32)
    assert tensors_digest([ones]) != tensors_digest([ones.view(2, 2)])
    assert tensors_digest([ones]) != tensors_digest([ones.view(torch.float32)])
    assert tensors_digest([ones, ones * 2]) != tensors_digest([ones * 2, ones])
    assert tensors_digest([torch.zeros(2, dtype=torch.bfloat16)]) == tensors_digest(
        [torch.zeros(2, dtype=torch.bfloat16)]
    )


def _artifacts(folder: Path) -> tuple[Path, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "a.xml", folder / "a.bin"]
    files[0].write_text("<net/>")
    files[1].write_bytes(bytes(range(256)) * 4)
    record = folder / "a.json"
    write_record(record, "key-1", files, {"openvino": "x"})
    return record, files


def test_a_written_record_verifies(tmp_path: Path) -> None:
    record, files = _artifacts(tmp_path)
    assert verify_record(record, "key-1", files)
    assert read_record(record)["details"] == {"openvino": "x"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _flip_one_byte(files: list[Path], record: Path) -> None:
    data = bytearray(files[1].read_bytes())
    data[100] ^= 1
    files[1].write_bytes(bytes(data))


TAMPERS = {
    "one byte of the .bin": (_flip_one_byte, "a.bin"),
    "truncated .bin": (lambda f, r: f[1].write_bytes(f[1].read_bytes()[:10]), "a.bin"),
    "edited .xml": (lambda f, r: f[0].write_text("<net edited/>"), "a.xml"),
    "deleted .bin": (lambda f, r: f[1].unlink(), "a.bin"),
    "record not JSON": (lambda f, r: r.write_text("{not json"), "a.json"),
    "record deleted": (lambda f, r: r.unlink(), "a.json"),
    "record is a list": (lambda f, r: r.write_text("[]"), "a.json"),
    "record's hash edited": (
        lambda f, r: r.write_text(r.read_text().replace('"a.bin": "', '"a.bin": "0')),
        "a.json",
    ),
    "record's key edited": (
        lambda f, r: r.write_text(r.read_text().replace("key-1", "key-2")),
        "a.json",
    ),
    "record lists one file": (
        lambda f, r: r.write_text(
            json.dumps({**json.loads(r.read_text()), "files": {"a.xml": "0"}})
        ),
        "a.json",
    ),
    "record replaced by a folder": (lambda f, r: (r.unlink(), r.mkdir()), "a.json"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_verify_is_false_on_any_tamper_and_names_the_file(tmp_path: Path, tamper: str) -> None:
    record, files = _artifacts(tmp_path)
    change, culprit = TAMPERS[tamper]
    change(files, record)
    assert verify_record(record, "key-1", files) is False
    assert culprit in record_problem(record, "key-1", files)


def test_verify_is_false_for_another_key(tmp_path: Path) -> None:
    record, files = _artifacts(tmp_path)
    assert not verify_record(record, "key-2", files)


def test_a_record_only_names_files_in_its_own_folder(tmp_path: Path) -> None:
    record, files = _artifacts(tmp_path / "here")
    stranger = tmp_path / "elsewhere.bin"
    stranger.write_bytes(b"x")
    with pytest.raises(ValueError, match="not in the record's folder"):
        write_record(record, "key-1", [*files, stranger])


def test_artifacts_go_beside_a_writable_model(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert artifact_folder(model_dir, "openvino") == model_dir / "cache" / "openvino"
    assert (model_dir / "cache" / "openvino").is_dir()


@pytest.mark.parametrize("situation", ["no model folder", "cache is a file", "no such folder"])
def test_otherwise_artifacts_go_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, situation: str
) -> None:
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "user"))
    model_dir: Path | None = tmp_path / "model"
    if situation == "no model folder":
        model_dir = None
    elif situation == "cache is a file":  # unwritable even for root, unlike a chmod
        model_dir.mkdir()
        (model_dir / "cache").write_text("")
    folder = artifact_folder(model_dir, "openvino")
    assert folder == tmp_path / "user" / "openvino" and folder.is_dir()
    if situation == "no such folder":
        assert not model_dir.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_model_folder_sends_artifacts_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "user"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_dir.chmod(0o555)
    try:
        assert artifact_folder(model_dir, "openvino") == tmp_path / "user" / "openvino"
    finally:
        model_dir.chmod(0o755)
