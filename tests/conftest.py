"""Shared test settings: deterministic seeds, a small thread count, data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMVID_ROOT = Path(
    os.environ.get("ATROUS_CAMVID", REPO_ROOT.parent / "shared" / "datasets" / "camvid")
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def camvid_root() -> Path:
    """Path of the real CamVid data; the test is skipped with the reason when absent."""
    if not (CAMVID_ROOT / "train.txt").exists():
        pytest.skip(f"CamVid data not found at {CAMVID_ROOT} (set ATROUS_CAMVID to its folder)")
    return CAMVID_ROOT


@pytest.fixture(autouse=True)
def _sample_check_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Training's sample-check cache lives in a scratch folder, not the user's home."""
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "atrous-cache"))
