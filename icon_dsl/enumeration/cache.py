"""Probe outcomes kept on disk between listings, so that a listing need not import torch.

Takes: probe keys (`probe.probe_key`: everything the probe reads from an IR, with the registry
blocks it names) and their outcomes. Guarantees: an outcome is read back only under the same
fingerprint: the text of every source file of the `icon_dsl` package and the installed torch
version, so any change to the compiler, the interpreter or torch starts an empty cache. Reads and
writes never fail a listing (a missing, unreadable or unwritable cache is an empty one); writes
are atomic (a temporary file renamed). `ICON_DSL_CACHE_DIR` chooses the folder (default
`~/.cache/icon-dsl`); `off` turns the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

_KEEP = 8  # fingerprint files kept in the folder (the newest)


def cache_dir() -> Path | None:
    """The folder, or None when `ICON_DSL_CACHE_DIR` is `off`."""
    where = os.environ.get("ICON_DSL_CACHE_DIR", "")
    if where.lower() == "off":
        return None
    return Path(where) if where else Path.home() / ".cache" / "icon-dsl"


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """A hash of every `icon_dsl` source file and the installed torch version."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".lark", ".j2") and path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    try:
        digest.update(metadata.version("torch").encode())
    except metadata.PackageNotFoundError:
        digest.update(b"no torch")
    return digest.hexdigest()[:20]


def _file() -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / f"probes-{fingerprint()}.json"


def entry(key: str) -> str:
    """The name a probe key is stored under."""
    return hashlib.sha256(key.encode()).hexdigest()


def load() -> dict[str, str | None]:
    """The stored outcomes under this fingerprint (empty when there are none)."""
    path = _file()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, (str, type(None)))
    }


def save(outcomes: dict[str, str | None]) -> None:
    """Store outcomes under this fingerprint (merged with what is there); errors are ignored."""
    path = _file()
    if path is None or not outcomes:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**load(), **outcomes}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".probes-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(merged, fh, sort_keys=True)
        os.replace(tmp, path)
        old = sorted(path.parent.glob("probes-*.json"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-_KEEP]:
            stale.unlink(missing_ok=True)
    except OSError:
        return
