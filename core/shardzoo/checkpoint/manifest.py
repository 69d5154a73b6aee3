"""The checkpoint manifest: every file with its size and CRC32, written last, checked first.

Hashing and checking are spread over the ranks (file i goes to rank i % world), so each byte
is read once per save and once per resume whatever the world size. Every rank learns every
problem through one gather, so a bad file stops all ranks with the same error instead of
leaving some of them waiting in a collective.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable, Optional

from ..errors import CheckpointError
from .layout import MANIFEST

Gather = Callable[[object], list]
"""all_gather_object: this rank's value -> every rank's value (identity list for one process)."""

_CHUNK = 8 * 2**20




def raise_if_any(gather: Gather, error: Optional[str]) -> None:
    """Collective: every rank raises the first error any rank reported, so none waits for the others."""
    errors = [e for e in gather(error) if e]
    if errors:
        raise CheckpointError(errors[0])


def crc32_of(path: Path) -> int:
    crc = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


def list_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def describe_share(root: Path, names: list[str], checksums: bool, rank: int, world: int) -> dict[str, dict]:
    """{name: {bytes, crc32?}} for this rank's share of the files."""
    return {name: {"bytes": (root / name).stat().st_size, **({"crc32": crc32_of(root / name)} if checksums else {})}
            for name in names[rank::world]}


def describe_files(root: Path, names: list[str], checksums: bool, rank: int, world: int,
                   gather: Gather, share: Optional[dict[str, dict]] = None) -> dict[str, dict]:
    """{name: {bytes, crc32?}} for all files, each rank hashing its share (or handing in `share`, hashed
    already: an async save hashes in its background thread)."""
    merged: dict[str, dict] = {}
    for part in gather(describe_share(root, names, checksums, rank, world) if share is None else share):
        merged.update(part)
    return {name: merged[name] for name in names}


def write_manifest(root: Path, files: dict[str, dict], meta: dict) -> None:
    (root / MANIFEST).write_text(json.dumps({**meta, "files": files}, indent=1))


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
        for name, entry in files.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) \
                    or not isinstance(entry.get("crc32", 0), int):
                raise TypeError(f"the entry of {name!r} lacks an integer 'bytes' (or has a bad 'crc32'): {entry!r}")
    except FileNotFoundError:
        raise CheckpointError(f"{root}: no {MANIFEST}, so the checkpoint is incomplete (its save was interrupted); "
                              "resume from an earlier checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc}); the checkpoint is corrupted, resume from an "
                              "earlier checkpoint") from None
    return manifest


def _problem(root: Path, name: str, entry: dict) -> Optional[str]:
    path = root / name
    if not path.is_file():
        return f"{path}: missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or overwritten)"
    if "crc32" in entry and crc32_of(path) != entry["crc32"]:
        return f"{path}: CRC32 differs from the manifest (the bytes are corrupted)"
    return None


def verify(root: Path, rank: int, world: int, gather: Gather) -> dict:
    """Check every file of the manifest across the ranks; raise the same CheckpointError on all of them."""
    error = None
    try:
        manifest = read_manifest(root)
    except CheckpointError as exc:
        manifest, error = None, str(exc)
    problems = []
    if manifest is not None:
        names = sorted(manifest["files"])
        problems = [p for name in names[rank::world] if (p := _problem(root, name, manifest["files"][name]))]
        if rank == 0:
            # Only what the save wrote is read back: a file copied in later would be loaded as state.
            strays = sorted(set(list_files(root)) - set(names))
            problems += [f"{root / name}: not in the manifest (not written by the save); remove it" for name in strays]
    gathered = gather((error, problems))
    errors = sorted({e for e, _ in gathered if e})
    problems = sorted(p for _, ps in gathered for p in ps)
    if errors:
        raise CheckpointError(errors[0])
    if problems:
        raise CheckpointError(f"checkpoint {root} is damaged: " + "; ".join(problems[:10])
                              + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
                              + "; resume from an earlier checkpoint (training.resume: <path>)")
    return manifest
