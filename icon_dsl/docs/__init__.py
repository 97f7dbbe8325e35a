"""The reference docs, generated: docs/language.md and docs/errors.md.

Takes: the grammar file (`parser.grammar_text()`), the registry (`registry.BLOCKS`, `INPUTS`, ...)
and `diagnostics.CODES`. Guarantees: `language_markdown()` and `errors_markdown()` are pure
functions of those, deterministic to the byte; every error example is run through the checker
when the docs are built, so a message shown in docs/errors.md is exactly what a user sees. The
prose between the generated parts lives here, one module a page (language, errors, methods).
`python -m icon_dsl.docs` writes them; `--check` only compares them (exit 1 when out of date).
"""

from .common import DOCS_DIR, GENERATED, GENERATED_END, SPECS_DIR
from .errors import EXAMPLES, LONG_EXAMPLES, MORE_EXAMPLES, errors_markdown, example_report
from .language import language_markdown
from .methods import CONFORMANCE, methods_markdown
from .pages import PAGES, main

__all__ = [
    "CONFORMANCE",
    "DOCS_DIR",
    "EXAMPLES",
    "GENERATED",
    "GENERATED_END",
    "LONG_EXAMPLES",
    "MORE_EXAMPLES",
    "PAGES",
    "SPECS_DIR",
    "errors_markdown",
    "example_report",
    "language_markdown",
    "main",
    "methods_markdown",
]
