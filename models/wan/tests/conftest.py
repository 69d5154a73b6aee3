"""Shared fixtures of the Wan tests: the tiny random encoders (umT5, VAE, tokenizer) on disk, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo_wan.tiny_encoders import save_tiny_encoders

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> Path:
    return save_tiny_encoders(tmp_path_factory.mktemp("wan_encoders"), REPO / "data/tokenizer")
