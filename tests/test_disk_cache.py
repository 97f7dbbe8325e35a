"""The disk caches: read back only under the same sources, never a failure, same results; the
parser's pickled tables only from a folder no one else can write."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SPECS
from lark import Token, Tree

import icon_dsl
from icon_dsl import disk_cache, known, parser
from icon_dsl.diagnostics import SpecError


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


def test_private_folders_of_old_sources_are_pruned(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each change of the sources makes a folder per purpose; only the newest KEEP stay, and
    other purposes are left alone."""
    other = disk_cache.private_folder("parser")
    for number in range(disk_cache.KEEP + 3):
        monkeypatch.setattr(disk_cache, "fingerprint", lambda number=number: f"{number:020d}")
        folder = disk_cache.private_folder("templates")
        assert folder is not None
        (folder / "kept.txt").write_text("x")
        os.utime(folder, (number, number))  # the order they were made in
    kept = sorted(p.name for p in cache.glob("templates-*"))
    assert kept == [f"templates-{n:020d}" for n in range(3, disk_cache.KEEP + 3)]
    assert other is not None and other.is_dir()


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


# -- the parser's tables (a pickle: only in the owner-only folder) -----------------------------

#: Specs that parse (one needs the postlex: newlines inside brackets) and broken ones, with one,
#: several and bracket errors, whose reports name what the parser expected at each error.
_PARSED = [spec.read_text() for spec in SPECS[:3]] + [
    "p = gaussian(\n    x,\n    sigma=(1 +\n a))\n"
]
_BROKEN = [
    "p = gaussian(x",
    "p = gaussian(x))\nq = = y\nloss = kl(p q)",
    "param a in [0 1]",
    "kernel k d2 = 1",
    "p = f(x) (y)",
    "p = gaussian(sigma=1=2)",
    "method\nmapper = table(dim=)\n",
]


def _layout(node: object) -> object:
    """A Lark tree as nested tuples, with the positions of every node and token."""
    if isinstance(node, Token):
        return (node.type, str(node), node.start_pos, node.end_pos)
    if isinstance(node, Tree):
        where = None if node.meta.empty else (node.meta.start_pos, node.meta.end_pos)
        return (node.data, where, [_layout(child) for child in node.children])
    return node


def _outcomes() -> tuple[list[object], list[str]]:
    """The trees of the good specs and the rendered reports (messages, lines, carets) of the
    broken ones, from the parser `_lark()` gives now."""
    trees = [_layout(parser._lark().parse(text)) for text in _PARSED]
    reports = []
    for text in _BROKEN:
        with pytest.raises(SpecError) as info:
            icon_dsl.parse(text)
        reports.append(str(info.value))
    return trees, reports


@pytest.fixture
def fresh_parser(cache: Path) -> Iterator[Path]:
    """No parser kept in this process, before and after; the cached file's folder."""
    parser._lark.cache_clear()
    yield cache
    parser._lark.cache_clear()


def _parser_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("parser-*/lalr-*.pickle"))


def _refuse_building(patch: pytest.MonkeyPatch) -> None:
    """Building the parser reads the grammar; loading it does not."""

    def refuse() -> str:
        raise AssertionError("the parser was built, not loaded")

    patch.setattr(parser, "grammar_text", refuse)


def test_parser_loaded_from_disk_parses_and_reports_alike(
    fresh_parser: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _outcomes()
    (stored,) = _parser_files(fresh_parser)
    assert (
        disk_cache.fingerprint() in stored.name and disk_cache.fingerprint() in stored.parent.name
    )
    assert stored.stat().st_mode & 0o777 == 0o600
    parser._lark.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        _refuse_building(patch)
        loaded = _outcomes()
    assert loaded == built
    assert "expected" in built[1][0] and built[1][1].count("error:") == 3  # real reports
    # other sources (another fingerprint: another grammar) never read this file
    parser._lark.cache_clear()
    monkeypatch.setattr(disk_cache, "fingerprint", lambda: "0" * 20)
    with pytest.MonkeyPatch.context() as patch:
        _refuse_building(patch)
        with pytest.raises(AssertionError, match="built, not loaded"):
            parser._lark()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_parser_file_is_rebuilt(fresh_parser: Path, damage: str) -> None:
    built = _outcomes()
    (stored,) = _parser_files(fresh_parser)
    data = stored.read_bytes()
    stored.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x80\x05junk" * 99}.get(damage, b"")
    )
    parser._lark.cache_clear()
    assert _outcomes() == built
    assert stored.stat().st_size > 1000  # rewritten whole: the next process loads it
    parser._lark.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        _refuse_building(patch)
        assert _outcomes() == built


def test_parser_cache_off_reads_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICON_DSL_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path))  # the default folder, ~/.cache/icon-dsl
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where temporary files go
    monkeypatch.chdir(tmp_path)
    parser._lark.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            _refuse_building(patch)
            with pytest.raises(AssertionError, match="built, not loaded"):
                parser._lark()
        assert _outcomes()[0]
    finally:
        parser._lark.cache_clear()
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_parser_file_in_a_folder_others_can_write_is_never_loaded(fresh_parser: Path) -> None:
    built = _outcomes()
    (stored,) = _parser_files(fresh_parser)
    kept = stored.read_bytes()
    stored.parent.chmod(0o770)  # the group may write: it could have planted the pickle
    parser._lark.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        _refuse_building(patch)
        with pytest.raises(AssertionError, match="built, not loaded"):
            parser._lark()
    assert _outcomes() == built
    assert _parser_files(fresh_parser) == [stored] and stored.read_bytes() == kept  # none written
