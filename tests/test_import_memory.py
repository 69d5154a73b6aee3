"""HF import never holds or reads the full model on a rank: peak RSS growth and bytes read per rank
against the model size."""

from __future__ import annotations

from pathlib import Path

from shardzoo.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "import_memory.py"


def test_each_rank_peaks_below_the_full_model():
    bench = load_script(BENCH)
    result = bench.measure(nproc=2, layers=12, hidden=1024)  # 572 MiB of fp32 weights
    for r in result["ranks"]:
        growth = r["peak_rss_growth_bytes"]
        # Expected: the rank's half of the parameters plus the replicated norms and ~40 MiB of fixed
        # allocator/runtime growth; measured 0.57x at this size (0.61-0.62x when each full tensor was read).
        # Holding the whole model would be >= 1.0x, so 0.8x separates the two with room for noise.
        assert growth < 0.8 * result["model_bytes"], result
        assert growth >= r["local_shard_bytes"], result  # the measurement sees the shard it built
        # Each rank reads the rows it keeps (half) plus the whole small tensors it replicates, headers and
        # config: measured 0.51x. Reading every tensor whole, as before, was 1.0x.
        assert r["local_shard_bytes"] <= r["bytes_read"] < 0.6 * result["model_bytes"], result
