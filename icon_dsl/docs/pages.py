"""The generated pages by file name, and the command that writes or checks them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .common import DOCS_DIR
from .errors import errors_markdown
from .language import language_markdown
from .methods import methods_markdown

PAGES: dict[str, Callable[[], str]] = {
    "language.md": language_markdown,
    "errors.md": errors_markdown,
    "methods.md": methods_markdown,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m icon_dsl.docs",
        description="Write docs/language.md, docs/errors.md and docs/methods.md.",
    )
    parser.add_argument("--out", type=Path, default=DOCS_DIR, metavar="DIR", help="default: docs/")
    parser.add_argument("--check", action="store_true", help="only say whether they are current")
    args = parser.parse_args(argv)
    stale = []
    for name, page in PAGES.items():
        path = args.out / name
        text = page()
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        for path in stale:
            print(f"{path} is out of date: run `python -m icon_dsl.docs`", file=sys.stderr)
        return 1
    return 0
