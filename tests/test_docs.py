"""The product's docs stand alone: every relative link in a Markdown file resolves inside the repository
(anchors included), and nothing in the repo points at material a clone does not have. Source files
stay small: none over 400 lines."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SKIPPED = {".git", ".nox", "node_modules", "outputs"}
MAX_LINES = 400


def _files(pattern: str) -> list[Path]:
    return [p for p in sorted(REPO.rglob(pattern)) if not SKIPPED & set(p.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.*)$", markdown, re.M)}


def test_every_relative_link_resolves_inside_the_repo():
    broken = []
    for md in _files("*.md"):
        for target in LINK.findall(md.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.is_relative_to(REPO) or not dest.exists():
                broken.append(f"{md.relative_to(REPO)}: {target} (no such file in the repo)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{md.relative_to(REPO)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_nothing_points_outside_the_repo():
    outside = re.compile(r"\.\./shared|shared/reference|DESIGN\.md")
    offences = [f"{p.relative_to(REPO)}:{n}" for pattern in ("*.md", "*.py", "*.sh", "*.yaml") for p in _files(pattern)
                for n, line in enumerate(p.read_text().splitlines(), 1)
                if outside.search(line) and p != Path(__file__).resolve()]
    assert not offences, "these name material outside the repository:\n" + "\n".join(offences)


def test_the_docs_the_readme_promises_exist():
    readme = (REPO / "README.md").read_text()
    for doc in ("docs/architecture.md", "docs/model_facts.md", "docs/npu_ops.md"):
        assert doc in readme and (REPO / doc).is_file(), doc


def test_no_source_file_over_400_lines():
    long = [f"{p.relative_to(REPO)}: {n}" for p in _files("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"split these by job (at most {MAX_LINES} lines):\n" + "\n".join(long)
