from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def minimal_raw(tmp_path) -> dict:
    """A valid raw config (inline model, sample data) that tests mutate into bad ones."""
    return {
        "model": {"model_id": "tiny_lm", "train_from_scratch": True,
                  "tokenizer_name_or_path": str(REPO / "data/tokenizer"),
                  "hf_config": {"vocab_size": 1024, "hidden_size": 32}},
        "data": {"dataset": "alpaca_sample", "dataset_dir": str(REPO / "data")},
        "training": {"output_dir": str(tmp_path / "out")},
    }

