"""Sessions: test-core, test-core-alone, test-qwen3, test-gpt_oss, test-internvl, test-wan, test-<name> for any
other model folder (e.g. one made by `shardzoo new-model`), tests (all shipped but those marked slow; it
queues test-core-alone for the core's own), slow (those), matrix (every feature combination case),
templates (every model folder scaffolded and its copy tested), gpu-check-image (the GPU check's dry run with the
GPU machine's torch and transformers), lint, bench, tune-qwen3-tiny, tune-gpt_oss-tiny, tune-internvl-tiny,
tune-wan-tiny.

torch is installed first and pinned (SHARDZOO_TORCH, default torch==2.13.0) so that nothing
later pulls an unpinned CUDA build. On a machine without a local CPU wheel, point
SHARDZOO_TORCH_INDEX at a CPU index, e.g. https://download.pytorch.org/whl/cpu.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("SHARDZOO_TORCH", "torch==2.13.0")
TORCH_INDEX = os.environ.get("SHARDZOO_TORCH_INDEX")
MODELS = ["qwen3", "gpt_oss", "internvl", "wan"]
# diffusers' from_pretrained of WanTransformer3DModel (fp32-kept modules) needs accelerate: the Wan
# tests load our exports with it, as a user would. wandb (offline) and matplotlib: the optional
# tracker and `shardzoo plot` are tested too.
TEST_EXTRAS = ["pytest", "accelerate", "wandb", "matplotlib"]


def install(session: nox.Session, models: list[str], *extra: str) -> None:
    if TORCH_INDEX:
        session.install(TORCH, "--index-url", TORCH_INDEX)
    else:
        session.install(TORCH)
    editable = ["-e", "core"]
    for model in models:
        editable += ["-e", f"models/{model}"]
    session.install(*editable, *extra)


def pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", *paths, *session.posargs, env={"PYTHONUNBUFFERED": "1"})


# What CI leaves to `nox -s slow`: further layouts of an equivalence a faster case already shows (4-rank
# runs, more tensor-parallel variants); the per-model sessions run them too.
NOT_SLOW = ("-m", "not slow")


@nox.session(name="test-core")
def test_core(session: nox.Session) -> None:
    """Core unit tests (config, ops, parallel, data, trainer) and repo-level tests."""
    install(session, MODELS, *TEST_EXTRAS)
    pytest(session, "core/tests", "tests", "--ignore=tests/templates")


@nox.session(name="test-core-alone")
def test_core_alone(session: nox.Session) -> None:
    """The core installed without any model package passes its own tests (its tiny LM stands in)."""
    install(session, [], "pytest")
    pytest(session, "core/tests", *NOT_SLOW)


@nox.session(name="test-qwen3")
def test_qwen3(session: nox.Session) -> None:
    """Qwen3: parity vs transformers, golden loss, FSDP2 equivalence, launch script."""
    install(session, ["qwen3"], "pytest")
    pytest(session, "models/qwen3/tests")


@nox.session(name="test-gpt_oss")
def test_gpt_oss(session: nox.Session) -> None:
    """GPT-OSS: parity vs transformers, MXFP4 import, golden loss, EP/FSDP2 equivalence, launch scripts."""
    install(session, ["gpt_oss"], "pytest")
    pytest(session, "models/gpt_oss/tests")


@nox.session(name="test-internvl")
def test_internvl(session: nox.Session) -> None:
    """InternVL: parity vs transformers (both InternViT styles), checkpoint layouts, image preprocessing."""
    install(session, ["qwen3", "internvl"], "pytest")
    pytest(session, "models/internvl/tests")


@nox.session(name="test-wan")
def test_wan(session: nox.Session) -> None:
    """Wan: DiT parity vs diffusers, checkpoint layouts, released sizes, flow matching through the trainer
    (golden loss, FSDP2 and CP equivalence, features = online encoding, resume, export to diffusers)."""
    install(session, ["wan"], *TEST_EXTRAS)
    pytest(session, "models/wan/tests")


def _scaffolded_models() -> list[str]:
    """Model folders beyond the shipped four (e.g. made by `shardzoo new-model`)."""
    root = Path(__file__).parent / "models"
    return sorted(p.name for p in root.iterdir() if (p / "pyproject.toml").is_file() and p.name not in MODELS)


def _model_session(model: str):
    def session(session: nox.Session) -> None:
        install(session, [model], *TEST_EXTRAS)
        pytest(session, f"models/{model}/tests")
    session.__doc__ = f"{model}: the package's own tests (a model folder without a hand-written session)."
    return session


for _model in _scaffolded_models():
    nox.session(name=f"test-{_model}")(_model_session(_model))


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI runs: the repo-level and model packages' tests with every package installed, then (queued
    after it) the core's own tests in test-core-alone, without any model package. The core's tests never
    import a model package, so they run once, where that independence is shown (test-core runs them
    beside the packages)."""
    install(session, MODELS, *TEST_EXTRAS)
    pytest(session, "tests", *[f"models/{m}/tests" for m in MODELS], "--ignore=tests/templates", *NOT_SLOW)
    session.notify("test-core-alone")


@nox.session
def slow(session: nox.Session) -> None:
    """The tests marked slow, which `tests` leaves out: more layouts of equivalences it already checks
    (tensor parallel on 4 ranks, TP x CP, TP x EP, kv heads replicated over tp 4)."""
    install(session, MODELS, *TEST_EXTRAS)
    pytest(session, "core/tests", "tests", *[f"models/{m}/tests" for m in MODELS], "--ignore=tests/templates",
           "-m", "slow")


@nox.session
def matrix(session: nox.Session) -> None:
    """The whole combination matrix (tests/matrix): every all-pairs case of models x features, 2 steps on
    2 gloo ranks each, with their equivalence twins; `nox -s tests` runs one case per model."""
    install(session, MODELS, *TEST_EXTRAS)
    session.run("pytest", "tests/matrix", *session.posargs, env={"PYTHONUNBUFFERED": "1", "SHARDZOO_MATRIX": "full"})


@nox.session
def templates(session: nox.Session) -> None:
    """Each shipped model folder scaffolded by `shardzoo new-model` and its copy's whole test folder run
    (long: every copy trains and launches its scripts)."""
    install(session, MODELS, *TEST_EXTRAS)
    pytest(session, "tests/templates")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "core", "models", "tests", "data", "benchmarks", "noxfile.py", "conftest.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures and write result files. benchmarks/run.py: every model's training
    step vs its reference implementation (transformers / diffusers) in the same loop and process, and
    every op backend vs its reference (posargs go to it, e.g. -- --models qwen3 --device cuda). Then the
    special ones: data preprocessing tokens/s vs a per-document encode loop; peak RSS per rank while an
    HF checkpoint loads and while it exports; the training stall of a save, sync vs async; shardzoo plan
    vs measured peaks (and Qwen3-8B's and GPT-OSS-20B's shapes with one layer through their scripts, ~15
    GiB); memory per rank of a long row, Ulysses CP=2 vs CP=1; MoE layer grouped GEMM vs a
    loop."""
    install(session, MODELS)
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/data_preprocess.py")
    session.run("python", "benchmarks/import_memory.py", "--nproc", "2")
    session.run("python", "benchmarks/export_memory.py", "--nproc", "2", "--max-shard-size", "300MB")
    session.run("python", "benchmarks/async_save.py")
    session.run("python", "benchmarks/plan_vs_measured.py")
    session.run("python", "benchmarks/real_shapes.py")
    session.run("python", "benchmarks/context_parallel_memory.py")
    session.run("python", "benchmarks/moe_layer.py")
    session.run("python", "benchmarks/tensor_parallel_comm.py")


# The lent GPU machine's image (torch 2.11 CUDA build, transformers 5.17), plus diffusers and PyAV, which it
# lacks and which are installed there from wheels for the Wan stages: the versions the GPU check meets.
GPU_IMAGE = ["torch==2.11.0", "transformers==5.17.0", "huggingface_hub==1.33.0", "tokenizers==0.23.2",
             "safetensors==0.8.0", "accelerate==1.15.0", "diffusers==0.42.1", "av==18.1.0", "pyyaml", "numpy",
             "tqdm", "pyarrow", "pillow", "requests", "pytest", "setuptools", "wheel"]


@nox.session(name="gpu-check-image")
def gpu_check_image(session: nox.Session) -> None:
    """The GPU check's dry run (every stage on tiny shapes on the CPU) under the GPU machine's versions, so
    an API those lack is found before a GPU comes. torch 2.11 from PyPI is its CUDA build: several GB to
    download once, and it runs on the CPU."""
    session.install(*GPU_IMAGE)
    editable = ["-e", "core"] + [arg for m in MODELS for arg in ("-e", f"models/{m}")]
    session.install("--no-deps", "--no-build-isolation", *editable)
    out = Path(session.create_tmp()) / "gpu_check_dry_run"
    session.run("bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out), *session.posargs, external=True)


@nox.session(name="tune-qwen3-tiny")
def tune_qwen3_tiny(session: nox.Session) -> None:
    """The main job: a tiny Qwen3 fine-tune on the CPU with the sample data."""
    install(session, ["qwen3"])
    session.run("bash", "models/qwen3/tune_tiny.sh", *session.posargs, external=True)


@nox.session(name="tune-internvl-tiny")
def tune_internvl_tiny(session: nox.Session) -> None:
    """A tiny InternVL image-text fine-tune on the CPU (data/image_sample.json, data/images)."""
    install(session, ["qwen3", "internvl"])
    session.run("bash", "models/internvl/tune_tiny.sh", *session.posargs, external=True)


@nox.session(name="tune-wan-tiny")
def tune_wan_tiny(session: nox.Session) -> None:
    """A tiny Wan text-to-video flow-matching fine-tune on the CPU (MODE=features to train on extracted features)."""
    install(session, ["wan"])
    session.run("bash", "models/wan/tune_tiny.sh", *session.posargs, external=True)


@nox.session(name="tune-gpt_oss-tiny")
def tune_gpt_oss_tiny(session: nox.Session) -> None:
    """A tiny GPT-OSS fine-tune on the CPU (NPROC=2 and --parallel.ep_size 2 for expert parallel)."""
    install(session, ["gpt_oss"])
    session.run("bash", "models/gpt_oss/tune_tiny.sh", *session.posargs, external=True)
