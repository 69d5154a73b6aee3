import json
from pathlib import Path

import pytest
from shardzoo.config import ConfigError, DataConfig
from shardzoo.data import DataError, StepBatches, build_sft_samples, collate, load_tokenizer
from shardzoo.data.dataset_info import DatasetSource
from shardzoo.data.formats import iter_conversations
from shardzoo.data.templates import qwen3, tokenize_conversation


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(Path(__file__).resolve().parents[2] / "data/tokenizer"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_alpaca_and_sharegpt_become_conversations(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "1 2", "output": "3", "system": "S",
                                             "history": [["hi", "hello"]]}])
    (msgs,) = [m for _, m in iter_conversations(DatasetSource("a", a, "alpaca"))]
    assert msgs == [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Add\n1 2"},
                    {"role": "assistant", "content": "3"}]
    s1, s2 = tmp_path / "s1.json", tmp_path / "s2.json"
    s1.write_text(json.dumps([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]))
    s2.write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]))
    convs = [m for _, m in iter_conversations(DatasetSource("s", s1, "sharegpt", {"messages": "messages"}))]
    convs += [m for _, m in iter_conversations(DatasetSource("s", s2, "sharegpt"))]
    assert convs[0] == convs[1] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("row,message", [
    ({"input": "x", "output": "y"}, "a.jsonl:2: missing or empty field 'instruction'"),
    ({"instruction": 3, "output": "y"}, "a.jsonl:2: field 'instruction' must be a string"),
    ({"instruction": "x", "output": "y", "history": [["only one"]]}, r"a.jsonl:2: history\[0\] must be"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "ok", "output": "ok"}, row])
    with pytest.raises(DataError, match=message):
        list(iter_conversations(DatasetSource("a", path, "alpaca")))


def test_bad_json_and_bad_turns(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "ok", "output": "ok"}\n{broken\n')
    with pytest.raises(DataError, match="a.jsonl:2: invalid JSON"):
        list(iter_conversations(DatasetSource("a", path, "alpaca")))
    s = tmp_path / "s.json"
    s.write_text(json.dumps([{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}]))
    with pytest.raises(DataError, match=r"s.json\[0\]: .*end with an assistant turn"):
        list(iter_conversations(DatasetSource("s", s, "sharegpt")))
    s.write_text(json.dumps([{"conversations": [{"from": "robot", "value": "a"}]}]))
    with pytest.raises(DataError, match=r"s.json\[0\]: turn 0 has role 'robot'"):
        list(iter_conversations(DatasetSource("s", s, "sharegpt")))


def test_qwen3_template_masks_everything_but_assistant_turns(tokenizer):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    segments = qwen3(msgs, tokenizer.eos_token)
    text = "".join(s for s, _ in segments)
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\n"
                    "a1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n"
                    "<think>\n\n</think>\n\na2<|im_end|>\n")
    sample = tokenize_conversation(segments, tokenizer, cutoff_len=1000, train_on_prompt=False)
    trained = tokenizer.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab != -100])
    assert trained == "a1<|im_end|>\n<think>\n\n</think>\n\na2<|im_end|>\n"
    assert tokenizer.decode(sample.input_ids) == text
    short = tokenize_conversation(segments, tokenizer, cutoff_len=9, train_on_prompt=True)
    assert len(short.input_ids) == 9 and short.labels == short.input_ids


def test_dataset_registry_errors(tmp_path, repo, tokenizer):
    with pytest.raises(ConfigError, match="data.dataset: 'nope' is not in .*dataset_info.json; known: alpaca_sample"):
        build_sft_samples(DataConfig(dataset="nope", dataset_dir=str(repo / "data")), tokenizer)
    with pytest.raises(ConfigError, match="data.dataset_dir: .*dataset_info.json does not exist"):
        build_sft_samples(DataConfig(dataset="x", dataset_dir=str(tmp_path)), tokenizer)
    with pytest.raises(ConfigError, match="data.template: 'llama9' is unknown"):
        build_sft_samples(DataConfig(dataset="alpaca_sample", dataset_dir=str(repo / "data"), template="llama9"),
                          tokenizer)
    inline = {"file_name": str(tmp_path / "missing.jsonl"), "formatting": "alpaca"}
    with pytest.raises(ConfigError, match="data.dataset.file_name: .*missing.jsonl does not exist"):
        build_sft_samples(DataConfig(dataset=inline), tokenizer)


def test_registry_and_max_samples(repo, tokenizer):
    cfg = DataConfig(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(repo / "data"), max_samples=50)
    assert len(build_sft_samples(cfg, tokenizer)) == 50
    cfg = DataConfig(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(repo / "data"))
    assert len(build_sft_samples(cfg, tokenizer)) == 320 + 120


def test_collate_shifts_labels_and_pads(tokenizer):
    from shardzoo.data import TokenizedSample

    batch = collate([TokenizedSample([5, 6, 7], [-100, 6, 7]), TokenizedSample([8, 9], [8, 9])], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.targets.tolist() == [[6, 7, -100], [9, -100, -100]]
    assert (batch.num_targets, batch.num_tokens) == (3, 5)


def test_ranks_read_disjoint_slices_of_the_same_global_batches():
    from shardzoo.data import TokenizedSample

    samples = [TokenizedSample([i, i], [i, i]) for i in range(40)]
    kw = dict(seed=3, shuffle=True, pad_id=0)
    single = StepBatches(samples, rank=0, world=1, batch_size=4, grad_accum=2, **kw)
    ranks = [StepBatches(samples, rank=r, world=2, batch_size=2, grad_accum=2, **kw) for r in range(2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 5
    for epoch in (0, 1):
        for one, *parts in zip(single.epoch(epoch), *(r.epoch(epoch) for r in ranks)):
            for micro in range(2):
                seen = [sorted(b[micro].input_ids[:, 0].tolist()) for b in parts]
                assert not set(seen[0]) & set(seen[1])
                assert sorted(seen[0] + seen[1]) == sorted(one[micro].input_ids[:, 0].tolist())
    assert single.order(0) != single.order(1)
    with pytest.raises(ValueError, match="the dataset has 40 samples but one optimizer step needs 64"):
        StepBatches(samples, rank=0, world=8, batch_size=4, grad_accum=2, **kw)
