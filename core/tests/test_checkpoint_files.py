"""Checkpoint files without a model: manifest checks, layout and pruning, generator state, safetensors reading."""

import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from shardzoo.checkpoint import CheckpointError, iter_safetensors, layout, rng
from shardzoo.checkpoint.manifest import describe_files, describe_share, list_files, verify, write_manifest


def one_rank(obj):
    return [obj]


def make_checkpoint(root, checksums=True):
    (root / "state").mkdir(parents=True)
    (root / "state" / "a.safetensors").write_bytes(bytes(range(256)) * 40)
    (root / "trainer_state.json").write_text('{"step": 3}')
    files = describe_files(root, list_files(root), checksums, 0, 1, one_rank)
    write_manifest(root, files, {"step": 3})
    return root


def test_manifest_accepts_an_intact_checkpoint(tmp_path):
    root = make_checkpoint(tmp_path / "checkpoint-3")
    manifest = verify(root, 0, 1, one_rank)
    assert set(manifest["files"]) == {"state/a.safetensors", "trainer_state.json"}


def test_manifest_spreads_work_and_merges_it_across_ranks(tmp_path):
    root = make_checkpoint(tmp_path / "checkpoint-3")
    names = list_files(root)
    rank1 = describe_share(root, names, True, 1, 2)
    assert list(rank1) == [names[1]]  # each rank hashes only its share
    merged = describe_files(root, names, True, 0, 2, lambda obj: [obj, rank1])
    assert merged == describe_files(root, names, True, 0, 1, one_rank)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "bytes, the manifest says"),
    (lambda p: p.write_bytes(p.read_bytes()[:500] + b"\xff" + p.read_bytes()[501:]), "CRC32 differs"),
    (lambda p: p.unlink(), "missing"),
], ids=["truncated", "flipped_byte", "deleted"])
def test_damaged_file_is_named(tmp_path, damage, message):
    root = make_checkpoint(tmp_path / "checkpoint-3")
    damage(root / "state" / "a.safetensors")
    with pytest.raises(CheckpointError, match=message) as err:
        verify(root, 0, 1, one_rank)
    assert "state/a.safetensors" in str(err.value)


def test_without_checksums_truncation_is_still_caught(tmp_path):
    root = make_checkpoint(tmp_path / "checkpoint-3", checksums=False)
    path = root / "state" / "a.safetensors"
    path.write_bytes(path.read_bytes()[:500] + b"\xff" + path.read_bytes()[501:])
    verify(root, 0, 1, one_rank)  # same size: only a checksum would notice
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="a.safetensors"):
        verify(root, 0, 1, one_rank)


def test_missing_or_garbled_manifest(tmp_path):
    root = make_checkpoint(tmp_path / "checkpoint-3")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json: unreadable"):
        verify(root, 0, 1, one_rank)
    (root / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify(root, 0, 1, one_rank)


def test_every_rank_raises_when_one_rank_finds_damage(tmp_path):
    root = make_checkpoint(tmp_path / "checkpoint-3")
    (root / "trainer_state.json").write_text('{"step": 4}')
    # Rank 0 checks file 0 (intact); rank 1's report of file 1 reaches it through the gather.
    reports = []

    def gather(obj):
        reports.append(obj)
        other = (None, [f"{root / 'trainer_state.json'}: CRC32 differs"])
        return [obj, other]
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        verify(root, 0, 2, gather)
    assert reports[0] == (None, [])


def test_layout_complete_incomplete_latest_and_prune(tmp_path):
    for step in (2, 4, 6, 10):
        make_checkpoint(tmp_path / layout.checkpoint_name(step))
    (tmp_path / ".tmp-checkpoint-12").mkdir()
    (tmp_path / "checkpoint-8").mkdir()  # published by hand without a manifest
    assert [p.name for p in layout.complete(tmp_path)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6",
                                                           "checkpoint-10"]
    assert [p.name for p in layout.incomplete(tmp_path)] == [".tmp-checkpoint-12", "checkpoint-8"]
    layout.write_atomic(tmp_path / layout.LATEST, "checkpoint-10")
    assert layout.read_latest(tmp_path) == "checkpoint-10"
    removed = layout.prune(tmp_path, keep=2, protect=tmp_path / "checkpoint-10")
    assert [p.name for p in removed] == ["checkpoint-2", "checkpoint-4"]
    assert [p.name for p in layout.complete(tmp_path)] == ["checkpoint-6", "checkpoint-10"]
    assert not any(p.name.startswith(layout.DELETING_PREFIX) for p in tmp_path.iterdir())
    assert layout.prune(tmp_path, keep=None, protect=tmp_path) == []


def test_generator_states_round_trip_through_json():
    import json

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.randn(), torch.randn(3)
    state = json.loads(json.dumps(rng.capture("cpu")))
    expected = (random.random(), np.random.randn(), torch.randn(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    rng.restore(state, "cpu")
    got = (random.random(), np.random.randn(), torch.randn(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_safetensors_reader_matches_the_library_and_names_truncation(tmp_path):
    tensors = {"w": torch.randn(4, 5), "b": torch.arange(7, dtype=torch.int64), "h": torch.randn(3).bfloat16(),
               "s": torch.tensor(2.5), "e": torch.empty(0, 3)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    got = dict(iter_safetensors(tmp_path))
    assert sorted(got) == sorted(tensors)
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t), k
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor \w+ ends at byte .* \(truncated\)"):
        list(iter_safetensors(tmp_path))
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage json!!}")
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        list(iter_safetensors(tmp_path))


def test_streamed_safetensors_file_reads_back_in_safetensors(tmp_path):
    """The export's writer (header first, tensors streamed) writes files safetensors itself loads."""
    from safetensors.torch import load_file
    from shardzoo.checkpoint.safetensors_writer import write_safetensors

    tensors = {"a": torch.randn(3, 5), "b.bf16": torch.randn(7).to(torch.bfloat16), "scalar": torch.tensor(2.5),
               "empty": torch.zeros(0, 4), "ints": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
    layout = [(k, t.shape, t.dtype) for k, t in tensors.items()]
    nbytes = write_safetensors(tmp_path / "w.safetensors", layout, iter(tensors.items()), {"format": "pt"})
    assert nbytes == sum(t.nbytes for t in tensors.values())
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # the temporary file was renamed
    back = load_file(str(tmp_path / "w.safetensors"))
    assert sorted(back) == sorted(tensors)
    assert all(torch.equal(back[k], t) for k, t in tensors.items())
    assert all(torch.equal(t, tensors[k]) for k, t in iter_safetensors(tmp_path))
