"""Results kept on disk between runs, valid only for the exact sources that computed them.

Takes: a name and JSON data (or, for `private_folder`, a purpose). Guarantees: data is read back only
under the same fingerprint (a hash of every source, grammar and template file of the `icon_dsl`
package and the installed torch version), so any change to the compiler starts from nothing.
Reads and writes never fail a command: a missing, unreadable, corrupt or unwritable cache is an
empty one. Writes are atomic (a temporary file renamed). Nothing read from here is executed
except jinja2's bytecode cache and the parser's pickled tables (parser.py), which live in folders
only their owner can write (`private_folder`; docs/security.md). `ICON_DSL_CACHE_DIR` chooses
the folder (default `~/.cache/icon-dsl`); `off` turns every cache off.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

KEEP = 8  # files kept per kind of data (the newest)


def cache_dir() -> Path | None:
    """The folder, or None when `ICON_DSL_CACHE_DIR` is `off`."""
    where = os.environ.get("ICON_DSL_CACHE_DIR", "")
    if where.lower() == "off":
        return None
    return Path(where) if where else Path.home() / ".cache" / "icon-dsl"


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """A hash of every `icon_dsl` source file and of the installed torch's version file."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".lark", ".j2") and path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    digest.update(_torch_version())
    return digest.hexdigest()[:20]


def _torch_version() -> bytes:
    """torch/version.py's text, found without importing torch (or importlib.metadata, which
    costs a command a sixtieth of a second)."""
    found = importlib.util.find_spec("torch")
    if found is None or found.origin is None:
        return b"no torch"
    try:
        return (Path(found.origin).parent / "version.py").read_bytes()
    except OSError:
        return b"torch without version.py"


def _path(kind: str) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / f"{kind}-{fingerprint()}.json"


def read_json(kind: str) -> Any | None:
    """What `write_json(kind, ...)` stored under this fingerprint, or None."""
    path = _path(kind)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(kind: str, data: Any) -> None:
    """Store data under this fingerprint, replacing what was there; errors are ignored."""
    path = _path(kind)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not replace_file(path, json.dumps(data, sort_keys=True).encode()):
        return
    try:
        old = sorted(path.parent.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-KEEP]:
            stale.unlink(missing_ok=True)
    except OSError:
        return


def replace_file(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, mode 0600, renamed),
    so that no reader sees half of it; False when it could not be written."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def private_folder(purpose: str) -> Path | None:
    """A folder of the cache for one purpose, created readable and writable by its owner only;
    None when caching is off, the folder cannot be made, or someone else could write to it."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{purpose}-{fingerprint()}"
    try:
        fresh = not path.exists()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if fresh:  # a new fingerprint: drop all but the newest KEEP folders of this purpose
            old = sorted(folder.glob(f"{purpose}-*"), key=lambda p: p.stat().st_mtime)
            for stale in old[:-KEEP]:
                shutil.rmtree(stale, ignore_errors=True)
    except OSError:
        return None
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return None
    return path
