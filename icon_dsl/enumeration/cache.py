"""Probe outcomes kept on disk between listings, so that a listing need not import torch.

Takes: probe keys (`probe.probe_key`: everything the probe reads from an IR, with the registry
blocks it names) and their outcomes. Guarantees: those of `icon_dsl.disk_cache` (read back only
under the fingerprint of the package's sources and torch's version; never fails a listing;
`ICON_DSL_CACHE_DIR` chooses the folder, `off` turns it off).
"""

from __future__ import annotations

import hashlib

from .. import disk_cache

_KIND = "probes"


def entry(key: str) -> str:
    """The name a probe key is stored under."""
    return hashlib.sha256(key.encode()).hexdigest()


def load() -> dict[str, str | None]:
    """The stored outcomes under this fingerprint (empty when there are none)."""
    data = disk_cache.read_json(_KIND)
    if not isinstance(data, dict):
        return {}
    return {
        k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, (str, type(None)))
    }


def save(outcomes: dict[str, str | None]) -> None:
    """Store outcomes under this fingerprint, merged with what is there."""
    if outcomes:
        disk_cache.write_json(_KIND, {**load(), **outcomes})
