"""Source text and spans.

Takes: the text of a spec and the name it is shown under (a path, or "<string>").
Guarantees: spans are half-open character offsets into that text; line and column numbers shown to
users are 1-based; `render_caret` underlines a span under its source line, as compilers do. The
line table is built once per Source, so rendering every diagnostic of a spec takes linear time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property

#: Characters of a source line shown around a span; longer lines are cut with "...".
_SHOWN = 100


@dataclass(frozen=True)
class Span:
    """Half-open [start, end) character offsets into one Source."""

    start: int
    end: int

    def join(self, other: Span) -> Span:
        return Span(min(self.start, other.start), max(self.end, other.end))


@dataclass(frozen=True)
class Source:
    """A spec's text with the name it is reported under."""

    text: str
    name: str = "<string>"

    @cached_property
    def _line_starts(self) -> list[int]:
        starts = [0]
        find = self.text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        return starts

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        starts = self._line_starts
        line = bisect.bisect_right(starts, offset) - 1
        return line + 1, offset - starts[line] + 1

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        starts = self._line_starts
        if not 0 < line <= len(starts):
            return ""
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[starts[line - 1] : end]

    def snippet(self, span: Span) -> str:
        return self.text[span.start : span.end]

    def render_caret(self, span: Span) -> str:
        """The span's first line, numbered, with carets under the span; a long line is cut to
        a window around the span."""
        line, col = self.line_col(span.start)
        text = self.line_text(line)
        end_line, end_col = self.line_col(max(span.start, span.end - 1))
        width = (end_col - col + 1) if end_line == line else len(text) - col + 1
        width = max(1, width)
        if len(text) > _SHOWN:
            text, col, width = _window(text, col, width)
        gutter = f"{line:>4} | "
        pad = " " * (len(gutter) - 2) + "| "
        # tabs before the span are kept, so the carets line up however tabs are shown
        indent = "".join(ch if ch == "\t" else " " for ch in text[: col - 1])
        return f"{gutter}{text}\n{pad}{indent}{'^' * width}"


def _window(text: str, col: int, width: int) -> tuple[str, int, int]:
    """About _SHOWN characters of a long line around the 1-based column `col`, marked with
    "..." where cut, and the span's column and caret width within them."""
    at = col - 1
    start = max(0, min(at - _SHOWN // 4, len(text) - _SHOWN))
    end = min(len(text), start + _SHOWN)
    head = "..." if start > 0 else ""
    tail = "..." if end < len(text) else ""
    return head + text[start:end] + tail, at - start + len(head) + 1, max(1, min(width, end - at))
