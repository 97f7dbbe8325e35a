"""The generated docs: docs/language.md and docs/errors.md must equal the generator's output.

When a block, an argument, a diagnostic code or a message changes, regenerate them with
`python -m icon_dsl.docs` and commit the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icon_dsl import docs, registry
from icon_dsl.diagnostics import CODES
from icon_dsl.parser import grammar_text

DOCS = Path(__file__).resolve().parent.parent / "docs"
REGENERATE = "run `python -m icon_dsl.docs` to regenerate it"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {name: page() for name, page in docs.PAGES.items()}


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_docs_on_disk_are_current(pages: dict[str, str], name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing: {REGENERATE}"
    assert path.read_text(encoding="utf-8") == pages[name], f"docs/{name} is stale: {REGENERATE}"


def test_generation_is_deterministic(pages: dict[str, str]) -> None:
    assert {name: page() for name, page in docs.PAGES.items()} == pages


def test_language_covers_the_registry(pages: dict[str, str]) -> None:
    text = pages["language.md"]
    for block in registry.BLOCKS.values():
        assert f"### `{block.name}`" in text
        assert block.formula in text
        for arg in block.args:
            assert f"| `{arg.name}` |" in text
            if arg.domain is not None:
                assert arg.domain.describe(arg.name) in text
    for name in registry.INPUTS:
        assert f"| `{name}` |" in text
    for metric in registry.METRICS:
        assert f"| `{metric}` |" in text
    assert grammar_text().rstrip("\n") in text
    for heading in ("## Statements", "## Mixtures", "## User kernels", "## What is checked"):
        assert heading in text


def test_every_code_has_an_example_with_its_exact_message(pages: dict[str, str]) -> None:
    assert set(docs.EXAMPLES) == set(CODES), "give docs.EXAMPLES one spec per diagnostic code"
    text = pages["errors.md"]
    for code in CODES:
        assert f"\n## {code}\n" in text
        _, report, _ = docs.example_report(code)
        assert f"```\n{report}\n```" in text
        assert f"[{code}]" in report


def test_an_example_that_stops_producing_its_code_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(docs.EXAMPLES, "arity", "p = knn(x, 3)\nq = gaussian(f(x))\nmapper = table")
    with pytest.raises(ValueError, match="does not produce it"):
        docs.errors_markdown()


def test_markdown_is_tidy(pages: dict[str, str]) -> None:
    for name, text in pages.items():
        assert text.endswith("\n") and not text.endswith("\n\n"), name
        for number, line in enumerate(text.splitlines(), 1):
            assert line == line.rstrip(), f"{name}:{number} has trailing spaces"
        assert text.count("```") % 2 == 0, f"{name} has an unclosed code fence"


def test_main_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main(["--out", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docs.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(docs.PAGES)
    assert docs.main(["--out", str(tmp_path), "--check"]) == 0
    for name in docs.PAGES:
        assert (tmp_path / name).read_text(encoding="utf-8") == (DOCS / name).read_text(
            encoding="utf-8"
        )


def test_conformance_table_names_real_tests() -> None:
    """Every test docs/methods.md cites exists, and every spec in specs/ has an objective."""
    root = DOCS.parent
    for stem, _, _, test in docs.CONFORMANCE:
        assert (root / "specs" / f"{stem}.icon").is_file(), stem
        path, name = test.split("::")
        assert f"def {name}(" in (root / path).read_text(encoding="utf-8"), test
    text = docs.methods_markdown()
    for spec in sorted((root / "specs").glob("*.icon")):
        assert f"### `specs/{spec.name}`" in text
