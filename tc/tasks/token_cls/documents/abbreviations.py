"""Abbreviation definitions in a document, with exact offsets: Schwartz & Hearst (2003).

Biomedical abstracts define a name once, "indomethacin (IDM)", and then use the short form; the
document rules (``rules.py``) need each definition's two spans. This is the algorithm of A. Schwartz
and M. Hearst, "A simple algorithm for identifying abbreviation definitions in biomedical text"
(PSB 2003), following the authors' Java reference: a short-form candidate is the text in parentheses
(at most two words and ten characters, a letter in it, starting with a letter or digit), or, when the
parentheses hold the long form, the word before them (which must then hold a capital); the long form
is the shortest run of words before it in which the short form's letters and digits appear in order,
right to left, the first one at the start of a word, with at most ``min(|SF| + 5, 2 |SF|)`` words.

Written here rather than taken from a package because of offsets: the ``abbreviations`` package (the
common Python port) rebuilds positions by joining tokens with single spaces, so a hyphen or a double
space before a definition shifts them, it refuses a whole sentence with unbalanced parentheses, and it
configures the root logger on import; scispaCy's ``AbbreviationDetector`` needs spaCy and a pipeline.
Every offset here indexes the text as given (CRLF, byte-order mark and non-ASCII text included, since
nothing is normalised). Two small additions to the paper, both tested: a parenthesis that opens with
"e.g.", "i.e.", "see", "cf." or "for example" holds no short form, and nested parentheses end the
candidate at the inner one, "interleukin 6 (IL-6 (ref. 3))" giving ``IL-6``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Abbreviation", "find_abbreviations", "occurrences"]

_NOT_DEFINITIONS = ("e.g.", "e.g,", "eg.", "i.e.", "i.e,", "ie.", "see ", "cf.", "cf ", "for example", "for instance")


@dataclass(frozen=True)
class Abbreviation:
    """One definition: ``text[long_start:long_end]`` is the long form of ``text[short_start:short_end]``."""

    short_start: int
    short_end: int
    long_start: int
    long_end: int
    short: str
    long: str


def find_abbreviations(text: str, spans: Sequence[tuple[int, int]] | None = None) -> list[Abbreviation]:
    """Every definition in ``text``, looked for within each ``[start, end)`` of ``spans`` (sentences;
    None: the whole text), in order of their short forms."""
    found: list[Abbreviation] = []
    for start, end in spans if spans is not None else [(0, len(text))]:
        found.extend(_in_sentence(text, start, end))
    return found


def occurrences(text: str, short: str) -> Iterator[tuple[int, int]]:
    """Every ``[start, end)`` where ``short`` stands as a whole token (no letter or digit touching it;
    case-sensitive: "AS" is not "as")."""
    pattern = re.compile(r"(?<![^\W_])" + re.escape(short) + r"(?![^\W_])")
    for match in pattern.finditer(text):
        yield match.start(), match.end()


def _closing(text: str, open_at: int, end: int) -> int | None:
    """The index of the ``)`` matching the ``(`` at ``open_at``, before ``end``; None when unbalanced."""
    depth = 0
    for i in range(open_at, end):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _in_sentence(text: str, start: int, end: int) -> Iterator[Abbreviation]:
    at = start
    while (open_at := text.find("(", at, end)) != -1:
        close = _closing(text, open_at, end)
        if close is None:
            return
        at = open_at + 1
        inner_start, inner_end = _strip(text, open_at + 1, close)
        for cut in ("; ", ", ", " ("):  # the first part only: "(TCDD; 1 ug/kg)", "(IL-6 (ref. 3))"
            found = text.find(cut, inner_start, inner_end)
            if found != -1:
                inner_end = _strip(text, inner_start, found)[1]
        inner = text[inner_start:inner_end]
        if not inner or inner.lower().startswith(_NOT_DEFINITIONS):
            continue
        before_start, before_end = _strip(text, start, open_at)
        if len(inner.split()) <= 2 and len(inner) <= 10:
            pair = _pair(text, (inner_start, inner_end), (before_start, before_end))
        else:  # "short form (long form)": the word before the parenthesis
            word_start = max(text.rfind(" ", before_start, before_end) + 1, before_start)
            short = (word_start, before_end)
            has_capital = any(c.isupper() for c in text[word_start:before_end])
            pair = _pair(text, short, (inner_start, inner_end)) if has_capital else None
        if pair is not None:
            yield pair


def _valid_short(short: str) -> bool:
    return 2 <= len(short) <= 10 and any(c.isalpha() for c in short) and short[0].isalnum()


def _pair(text: str, short: tuple[int, int], region: tuple[int, int]) -> Abbreviation | None:
    """The definition of ``text[short]`` with its long form at the end of ``text[region]``, if any."""
    sf = text[short[0] : short[1]]
    if not _valid_short(sf) or region[1] <= region[0]:
        return None
    long_start = _best_long_form(sf, text, *region)
    if long_start is None:
        return None
    lf = text[long_start : region[1]]
    words = len(lf.split())
    if words > min(len(sf) + 5, 2 * len(sf)) or len(lf) <= len(sf) or sf in lf.split():
        return None
    return Abbreviation(short[0], short[1], long_start, region[1], sf, lf)


def _best_long_form(sf: str, text: str, start: int, end: int) -> int | None:
    """Where the long form of ``sf`` starts in ``text[start:end]`` (which it ends), or None: the authors'
    right-to-left match, the first character at the start of a word."""
    s = len(sf) - 1
    i = end - 1
    while s >= 0:
        c = sf[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while i >= start and (text[i].lower() != c or (s == 0 and i > start and text[i - 1].isalnum())):
            i -= 1
        if i < start:
            return None
        i -= 1
        s -= 1
    word = max(text.rfind(" ", start, i + 1), text.rfind("\n", start, i + 1), text.rfind("\t", start, i + 1))
    return word + 1 if word != -1 else start
