import json
from pathlib import Path

import pytest
from shardzoo.config import ConfigError, DataConfig
from shardzoo.data import DataError, build_sft_samples, load_tokenizer
from shardzoo.data.dataset_info import DatasetSource
from shardzoo.data.formats import iter_conversations
from shardzoo.data.readers import RowErrors
from shardzoo.data.templates import gpt_oss, qwen3, tokenize_conversation


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
    ({"input": "x", "output": "y"}, "a.jsonl:2: missing column 'instruction' \\(prompt\\); the row has: input, output. "
                                    "Map your column"),
    ({"instruction": "", "output": "y"}, "a.jsonl:2: field 'instruction' is empty"),
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
    with pytest.raises(DataError, match=r"s.json\[row 0\]: .*end with an assistant turn"):
        list(iter_conversations(DatasetSource("s", s, "sharegpt")))
    s.write_text(json.dumps([{"conversations": [{"from": "robot", "value": "a"}]}]))
    with pytest.raises(DataError, match=r"s.json\[row 0\]: turn 0 has role 'robot'"):
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
    with pytest.raises(ConfigError, match="data.dataset_dir: looked for dataset_info.json in .* and found none; "
                       "set data.dataset_dir"):
        build_sft_samples(DataConfig(dataset="x", dataset_dir=str(tmp_path)), tokenizer)
    with pytest.raises(ConfigError, match="data.template: 'llama9' is unknown"):
        build_sft_samples(DataConfig(dataset="alpaca_sample", dataset_dir=str(repo / "data"), template="llama9"),
                          tokenizer)
    inline = {"file_name": str(tmp_path / "missing.jsonl"), "formatting": "alpaca"}
    with pytest.raises(ConfigError, match="data.dataset.file_name: .*missing.jsonl does not exist"):
        build_sft_samples(DataConfig(dataset=inline), tokenizer)


def test_registry_and_max_samples(repo, tokenizer):
    cfg = DataConfig(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(repo / "data"), max_samples=50)
    assert len(build_sft_samples(cfg, tokenizer)) == 2 * 50  # max_samples is per dataset
    cfg = DataConfig(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(repo / "data"))
    assert len(build_sft_samples(cfg, tokenizer)) == 320 + 120


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_csv_and_folders_read_the_same_conversations(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", rows[:2])
    write_parquet(folder / "b.parquet", rows[2:4])
    (folder / "c.csv").write_text("instruction,input,output\n" + f"{rows[4]['instruction']},,{rows[4]['output']}\n")
    (folder / "notes.txt").write_text("ignored: not a data file type")
    convs = list(iter_conversations(DatasetSource("m", folder, "alpaca")))
    assert [m[-1]["content"] for _, m in convs] == [f"a{i}" for i in range(5)]
    assert [w.rsplit("/", 1)[1] for w, _ in convs] == ["a.jsonl:1", "a.jsonl:2", "b.parquet[row 0]",
                                                      "b.parquet[row 1]", "c.csv:2"]
    # sharegpt turns in a CSV cell arrive JSON-encoded
    turns = json.dumps([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]).replace('"', '""')
    (tmp_path / "s.csv").write_text(f'conversations\n"{turns}"\n')
    ((_, msgs),) = list(iter_conversations(DatasetSource("s", tmp_path / "s.csv", "sharegpt")))
    assert msgs == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_skip_bad_rows_counts_them_and_empty_answers_are_counted(tmp_path, tokenizer):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "q", "output": "a"}\n{broken\n{"output": "a"}\n'
                    '{"instruction": "q", "output": ""}\n{"instruction": "q", "output": "b"}\n')
    with pytest.raises(DataError, match="a.jsonl:2: invalid JSON"):
        build_sft_samples(DataConfig(dataset={"file_name": str(path)}), tokenizer)
    errors = RowErrors(skip=True)
    convs = list(iter_conversations(DatasetSource("a", path, "alpaca"), errors))
    assert errors.count == 2 and len(convs) == 3

    from shardzoo.data.sft import DataStats, iter_samples

    stats = DataStats()
    cfg = DataConfig(dataset={"file_name": str(path)}, skip_bad_rows=True, cutoff_len=12)
    samples = list(iter_samples(DatasetSource("a", path, "alpaca"), cfg, tokenizer, stats, RowErrors(True)))
    assert (stats.rows, stats.empty_answers, stats.samples) == (3, 1, 2)
    assert stats.truncated == 2 and all(len(s.input_ids) == 12 for s in samples)


def test_qwen3_thinking_kept_on_the_last_turn_and_dropped_on_earlier_ones(tokenizer):
    msgs = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "<think>\nr1\n</think>\n\na1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "<think>r2</think>a2"}]
    text = "".join(s for s, _ in qwen3(msgs, ""))
    assert text == ("<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
                    "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\na2<|im_end|>\n")


def test_gpt_oss_harmony_format_and_labels(tokenizer):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "<think>old</think>a1"}, {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "<think>r2</think>a2"}]
    segments = gpt_oss(msgs, tokenizer.eos_token)
    text = "".join(s for s, _ in segments)
    assert text.startswith("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                           "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, "
                           "commentary, final. Channel must be included for every message.<|end|>")
    assert text.endswith("<|start|>developer<|message|># Instructions\n\nBe brief.<|end|>"
                         "<|start|>user<|message|>q1<|end|><|start|>assistant<|channel|>final<|message|>a1<|end|>"
                         "<|start|>user<|message|>q2<|end|><|start|>assistant<|channel|>analysis<|message|>r2<|end|>"
                         "<|start|>assistant<|channel|>final<|message|>a2<|return|>")
    sample = tokenize_conversation(segments, tokenizer, cutoff_len=10_000, train_on_prompt=False)
    trained = tokenizer.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab != -100])
    assert trained == ("<|channel|>final<|message|>a1<|end|><|channel|>analysis<|message|>r2<|end|>"
                       "<|start|>assistant<|channel|>final<|message|>a2<|return|>")
