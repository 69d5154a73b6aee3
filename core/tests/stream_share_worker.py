"""One rank of test_streaming_tokenises_each_rank_share (test_data_loader.py): a streamed dataset on
gloo ranks, each tokenising its share. Writes its batches (straight through, and resumed at a step)
and how many conversations it tokenised.

    torchrun --nproc-per-node 2 stream_share_worker.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import shardzoo.data.sft as sft
from shardzoo.data import build_train_data, load_tokenizer
from shardzoo.parallel import init_distributed, shutdown_distributed

sys.path.insert(0, str(Path(__file__).parent))
from test_data_loader import REPO, STREAM_STEPS, stream_cfg, stream_steps  # noqa: E402

tokenised = 0
_tokenize = sft.tokenize_conversations


def counting(conversations, *args, **kwargs):
    global tokenised
    tokenised += len(conversations)
    return _tokenize(conversations, *args, **kwargs)


def main(out: Path) -> None:
    sft.tokenize_conversations = counting
    rank, _, world = init_distributed("cpu")
    tokenizer = load_tokenizer(str(REPO / "data/tokenizer"))
    cfg = stream_cfg(out / f"rank{rank}")

    def build():
        return build_train_data(cfg, tokenizer, rank=rank, world=world, local_rank=rank, barrier=lambda: None)
    straight = stream_steps(build().loader, STREAM_STEPS)
    counted = tokenised
    head = build().loader
    first = stream_steps(head, 7)
    resumed = build().loader
    resumed.load_state_dict(head.state_dict())
    rest = stream_steps(resumed, STREAM_STEPS - 7)
    (out / f"rank{rank}.json").write_text(json.dumps({"straight": straight, "resumed": first + rest,
                                                      "tokenised": counted}))
    shutdown_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
