from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "cifar10-6k.npz"


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    if not SHARED_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 sample not found at {SHARED_NPZ}")
    return SHARED_NPZ


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("RESATTN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("RESATTN_TEST_POSTGRES_URL is not set")
    return url
