"""The disk caches: read back only under the same sources, never a failure, same results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SPECS

import icon_dsl
from icon_dsl import disk_cache, known


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ICON_DSL_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_round_trip_and_fingerprint(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk_cache.write_json("demo", {"a": [1, 2]})
    assert disk_cache.read_json("demo") == {"a": [1, 2]}
    (stored,) = cache.glob("demo-*.json")
    assert disk_cache.fingerprint() in stored.name
    # other sources (another fingerprint) see nothing
    monkeypatch.setattr(disk_cache, "fingerprint", lambda: "0" * 20)
    assert disk_cache.read_json("demo") is None


def test_corrupt_missing_and_off_are_empty(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert disk_cache.read_json("demo") is None
    disk_cache.write_json("demo", [1])
    (stored,) = cache.glob("demo-*.json")
    stored.write_text("{not json")
    assert disk_cache.read_json("demo") is None
    monkeypatch.setenv("ICON_DSL_CACHE_DIR", "off")
    disk_cache.write_json("demo", [2])  # nothing written, no error
    assert disk_cache.read_json("demo") is None
    assert disk_cache.private_folder("templates") is None


def test_unwritable_folder_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ICON_DSL_CACHE_DIR", str(blocker / "below"))
    disk_cache.write_json("demo", [1])
    assert disk_cache.read_json("demo") is None
    assert disk_cache.private_folder("templates") is None


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_private_folder_refuses_one_others_can_write(cache: Path) -> None:
    folder = disk_cache.private_folder("templates")
    assert folder is not None and folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o777)
    assert disk_cache.private_folder("templates") is None


def _recognised() -> dict[str, str | None]:
    out = {}
    for spec in SPECS:
        found = known.recognise(icon_dsl.check(spec).ir)
        out[spec.stem] = None if found is None else found.key
    return out


def test_known_index_cold_and_warm_agree(cache: Path) -> None:
    known._index.cache_clear()
    cold = _recognised()
    assert list(cache.glob("known-structures-*.json"))
    known._index.cache_clear()

    def refuse(text: str) -> None:
        raise AssertionError("a warm index checks no catalogue spec")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(known, "_checked_ir", refuse)
        warm = _recognised()
    assert cold == warm
    assert cold["tsne"] == "tsne" and cold["simclr"] == "simclr"


def test_tampered_known_index_is_rebuilt(cache: Path) -> None:
    known._index.cache_clear()
    expected = _recognised()
    (stored,) = cache.glob("known-structures-*.json")
    index = json.loads(stored.read_text())
    stored.write_text(json.dumps({sig: "no-such-method" for sig in index}))
    known._index.cache_clear()
    assert _recognised() == expected
    known._index.cache_clear()


def test_compiled_templates_give_the_same_module(cache: Path) -> None:
    from icon_dsl.codegen import emit

    emit._env.cache_clear()
    cold = icon_dsl.compile(SPECS[0]).source
    assert any(disk_cache.private_folder("templates").iterdir())  # type: ignore[union-attr]
    emit._env.cache_clear()
    assert icon_dsl.compile(SPECS[0]).source == cold
    emit._env.cache_clear()
