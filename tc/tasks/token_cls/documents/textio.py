"""Reading files as exact text and splitting them into lines that join back to the same bytes.

Readers keep every character (``\\r`` included: offsets in BRAT and PubTator count it), so the only
decoding done is UTF-8; a byte-order mark is kept out of the text but remembered so that it is
written back.
"""

from __future__ import annotations

from pathlib import Path

from tc.core.errors import DataError

BOM = "\ufeff"


def read_text(path: Path, what: str = "file") -> tuple[str, bool]:
    """``(text, had_bom)`` of ``path``; missing, unreadable or non-UTF-8 files are user errors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if text.startswith(BOM):
        return text[1:], True
    return text, False


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines of ``text`` without their ``\\n`` (a ``\\r`` stays on its line) and whether the text ended
    with a newline: ``join_lines(*split_lines(t)) == t`` for every ``t``."""
    lines = text.split("\n")
    final = len(lines) > 1 and lines[-1] == ""
    if final:
        lines.pop()
    return lines, final


def join_lines(lines: list[str], final_newline: bool = True) -> str:
    """The inverse of ``split_lines``."""
    text = "\n".join(lines)
    return text + "\n" if final_newline and lines else text
