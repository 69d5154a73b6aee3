"""Every shipped model folder is a working template: `shardzoo new-model foo --from <template>` gives a
package whose whole test folder passes with nothing skipped. Long (each copy trains, launches its
scripts, compares against its reference): `nox -s templates`; `nox -s tests` keeps the qwen3 case
of tests/test_new_model.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.testing.scaffolded import run_tests, scaffold

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("template", ["qwen3", "gpt_oss", "internvl", "wan"])
def test_a_copy_passes_its_whole_test_folder(template, tmp_path):
    made = scaffold(REPO, template, "foo", tmp_path)
    run = run_tests(made)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-3000:]
