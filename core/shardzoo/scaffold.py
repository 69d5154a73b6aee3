"""`shardzoo new-model <name> --from <template>`: a new model package copied from an existing one.

The copy is renamed the way models/README.md tells a user to rename a `cp -r` by hand:
- the family name everywhere it names ours: folder, package `shardzoo_<name>`, distribution
  `shardzoo-<name>`, entry points (model_id), module and file names, configs and scripts
  (`tune_<name>_*.yaml`, output dirs), the golden file;
- the class prefix (`Qwen3ForCausalLM` -> `FooForCausalLM`) and the HF architecture and model_type
  the spec claims, so the registry never finds two packages for one checkpoint.

What names the reference model keeps its name: what the package imports from transformers / diffusers
(the parity tests still compare against it until the modeling file changes), hub ids
(`Qwen/Qwen3-8B`), and the released configs under configs/<checkpoint>/ (copied verbatim, folder
name included: they are that checkpoint's facts). The data pipeline's chat `template` names and the
shared files under data/ are not model names either. Measured results (benchmarks/results), build
leftovers and caches are not copied.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_SKIPPED_DIRS = ("__pycache__", ".pytest_cache", "results")
_TEXT_SUFFIXES = (".py", ".toml", ".yaml", ".yml", ".sh", ".md", ".json", ".txt", ".cfg")
# The data pipeline's chat template after `template` in YAML, Python, prose or a CLI override
# (`template: gpt_oss`, `.template == "gpt_oss"`, `--data.template gpt_oss`): a format, not our model.
_CHAT_TEMPLATE = re.compile(r"""(?<=template)(?:["']?\s*(?:==|=|:)?\s*["']?)\w+""")
# Hub ids of the reference checkpoints (Qwen/Qwen3-8B, checkpoints/Qwen3-8B): the reference's names.
_HUB_ID = re.compile(r"(?<![\w.-])[\w-]+/[A-Z][\w.-]*")
_VENDOR_IMPORT = re.compile(r"^\s*(from\s+(transformers|diffusers)[\w.]*\s+import|import\s+(transformers|diffusers))")
# Masked while renaming: dotted paths into the vendor libraries, and the repository's shared data
# (data/tokenizer_internvl belongs to every copy, not to the template).
_SHARED = re.compile(r"\b(transformers|diffusers)(\.\w+)+|(?<![\w/.])data/[\w./-]+")


@dataclass(frozen=True)
class Rename:
    old: str
    """The template's family name, e.g. qwen3 (folder, model_id, package suffix)."""
    new: str
    old_class: str
    """The template's class prefix as spelled in its code, e.g. Qwen3, GptOss, InternVL."""
    new_class: str

    kept: tuple[str, ...] = ()
    """Exact names never renamed: the released-config folders of the template (e.g. qwen3-8b)."""

    def text(self, text: str, vendor_names: frozenset[str]) -> str:
        lines = text.splitlines(keepends=True)
        return "".join(line if _VENDOR_IMPORT.match(line) else self._line(line, vendor_names) for line in lines)

    def _line(self, line: str, vendor_names: frozenset[str]) -> str:
        masked: list[str] = []

        def mask(match: re.Match) -> str:
            masked.append(match.group(0))
            return f"\0{len(masked) - 1}\0"

        for pattern in (_SHARED, _CHAT_TEMPLATE, _HUB_ID, *self._kept_patterns()):
            line = pattern.sub(mask, line)
        line = re.sub(rf"(?<![A-Za-z0-9]){re.escape(self.old_class)}(\w*)",
                      lambda m: m.group(0) if m.group(0) in vendor_names or m.group(1)[:1].islower()
                      else self.new_class + m.group(1), line)
        for old, new in ((self.old, self.new), (self.old.upper(), self.new.upper())):
            line = re.sub(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![a-z0-9])", new, line)
        return re.sub(r"\0(\d+)\0", lambda m: masked[int(m.group(1))], line)

    def _kept_patterns(self) -> list[re.Pattern]:
        return [re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])") for name in self.kept]

    def path(self, name: str) -> str:
        if name in self.kept:
            return name
        return re.sub(rf"(?<![A-Za-z0-9]){re.escape(self.old)}(?![a-z0-9])", self.new, name)


def released_configs(package: Path) -> list[Path]:
    """configs/<checkpoint>/ folders holding a released config.json (for planning real sizes)."""
    return sorted(p.parent for p in package.glob("configs/*/config.json"))


def class_prefix(name: str) -> str:
    """foo -> Foo, my_llm -> MyLlm."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def template_class_prefix(package_dir: Path, family: str) -> str:
    """How the template spells its family in class names (Qwen3, GptOss, InternVL): the most frequent
    capitalised identifier prefix that equals the family name without underscores, ignoring case."""
    plain = family.replace("_", "")
    pattern = re.compile(rf"(?<![A-Za-z0-9])([A-Z]\w{{{len(plain) - 1}}})", re.ASCII)
    counts = Counter(m.group(1) for path in package_dir.rglob("*.py") for m in pattern.finditer(path.read_text())
                     if m.group(1).lower() == plain)
    if not counts:
        raise ConfigError(f"--from {family}: no class in {package_dir} is named after the family "
                          f"(expected a prefix like {class_prefix(family)}); pass --template-class")
    return counts.most_common(1)[0][0]


def vendor_names(text: str) -> frozenset[str]:
    """Names a file imports from transformers / diffusers without renaming them (`X`, not `X as Y`)."""
    names = set()
    for block in re.finditer(r"from\s+(?:transformers|diffusers)[\w.]*\s+import\s+(\([^)]*\)|[^\n]*)", text):
        for item in block.group(1).strip("()").replace("\n", " ").split(","):
            parts = item.split()
            if len(parts) == 1:
                names.add(parts[0])
    return frozenset(names)


def new_model(name: str, template: str, models_dir: Path, *, new_class: str | None = None,
              template_class: str | None = None) -> list[Path]:
    """Copy models_dir/<template> to models_dir/<name> renamed; returns the files written."""
    if not NAME.match(name):
        raise ConfigError(f"new-model: {name!r} must be a lowercase Python identifier (letters, digits, _), "
                          "e.g. mistral or my_llm")
    source, dest = models_dir / template, models_dir / name
    if not (source / "pyproject.toml").is_file():
        known = sorted(p.name for p in models_dir.iterdir() if (p / "pyproject.toml").is_file()) \
            if models_dir.is_dir() else []
        raise ConfigError(f"new-model --from {template}: {source} is not a model package (no pyproject.toml); "
                          f"templates in {models_dir}: {', '.join(known) or 'none'}")
    if dest.exists():
        raise ConfigError(f"new-model: {dest} already exists; choose another name or remove it")
    package = source / f"shardzoo_{template}"
    released = released_configs(source)
    rename = Rename(template, name, template_class or template_class_prefix(package, template),
                    new_class or class_prefix(name), tuple(sorted(p.name for p in released)))

    written = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_dir() or any(part in _SKIPPED_DIRS or part.endswith(".egg-info") for part in rel.parts) \
                or path.suffix == ".pyc":
            continue
        target = dest / Path(*[rename.path(part) for part in rel.parts])
        target.parent.mkdir(parents=True, exist_ok=True)
        if any(folder in path.parents for folder in released):
            shutil.copyfile(path, target)  # the reference checkpoint's own facts
        elif path.suffix in _TEXT_SUFFIXES:
            text = path.read_text()
            target.write_text(rename.text(text, vendor_names(text)))
        else:
            shutil.copyfile(path, target)
        shutil.copymode(path, target)
        written.append(target)
    _add_provenance(dest / "README.md", template, name)
    return written


def _add_provenance(readme: Path, template: str, name: str) -> None:
    note = (f"> Scaffolded from `models/{template}` by `shardzoo new-model {name} --from {template}`. Until the "
            f"modeling file changes, this package is the {template} model under new names and its parity tests "
            "still compare against the template's reference implementation. models/README.md lists what to "
            "change.\n\n")
    text = readme.read_text() if readme.exists() else f"# {name}\n\n"
    head, _, rest = text.partition("\n")
    readme.write_text(f"{head}\n\n{note}{rest.lstrip()}")
