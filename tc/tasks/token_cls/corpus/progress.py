"""Progress lines on stderr, at most every ``TC_PROGRESS_SECONDS`` (default 5) seconds.

A long run is never silent: a file input reports the share of its bytes consumed, the rate and an ETA
(measured from the bytes tagged in this run, so a resumed run's skipped prefix does not flatter it);
stdin reports documents so far; a very long single document reports its characters. Lines, not a live
bar, because they survive being piped to a log file and read the same in a terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

Note = Callable[[str], None]


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


class ProgressLine:
    """Rate-limited progress for ``tc predict``; ``enabled=False`` (``--quiet``, ranks but the first)
    makes every call a no-op."""

    def __init__(self, enabled: bool, note: Note, kind: str = "documents") -> None:
        self.enabled = enabled
        self.note = note
        self.kind = kind
        self.interval = float(os.environ.get("TC_PROGRESS_SECONDS", "5"))
        self.start = self.last = self.doc_start = time.perf_counter()
        self.doc_done = 0
        self.bytes_start: int | None = None

    def _due(self, final: bool = False) -> bool:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.interval and not final):
            return False
        self.last = now
        return True

    def long_document(self, done: int, total: int, words: int) -> None:
        """``Predictor.progress``: characters done of one long document."""
        if done <= self.doc_done:  # a new document began
            self.doc_start = time.perf_counter()
        self.doc_done = done
        if not self._due(final=done >= total):
            return
        elapsed = time.perf_counter() - self.doc_start
        eta = elapsed / max(done, 1) * (total - done)
        self.note(f"long document: {done:,} of {total:,} characters ({100 * done / max(total, 1):.0f}%), "
                  f"{words:,} words, {elapsed:.0f} s, ETA {eta:.0f} s")

    def documents(self, count: int, words: int) -> None:
        """Input of unknown size (stdin): what was tagged so far."""
        if self._due():
            self.note(f"tagged {count:,} {self.kind} ({words:,} words) so far, "
                      f"{time.perf_counter() - self.start:.0f} s")

    def begin(self, bytes_done: int) -> None:
        """Tagging starts (after any resumed prefix was skipped) at ``bytes_done`` of the input."""
        self.bytes_start = bytes_done
        self.start = time.perf_counter()

    def corpus(self, count: int, bytes_done: int, bytes_total: int) -> None:
        """A file input: ``count`` units done in all, ``bytes_done`` of ``bytes_total`` read, with an ETA."""
        if not self._due():
            return
        start = self.bytes_start if self.bytes_start is not None else 0
        elapsed = time.perf_counter() - self.start
        share = bytes_done / max(bytes_total, 1)
        rate = (bytes_done - start) / max(elapsed, 1e-9)
        eta = (bytes_total - bytes_done) / rate if rate > 0 else float("inf")
        self.note(f"tagged {count:,} {self.kind}, {100 * share:.0f}% of {_size(bytes_total)}, "
                  f"{_duration(elapsed)}, ETA {_duration(eta) if eta != float('inf') else '?'}")


_console: Any = None


def note(message: str) -> None:
    """A progress line on stderr: never wrapped or marked up, so paths and numbers stay intact."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    _console.print(message, highlight=False, soft_wrap=True, markup=False)


def throughput(units: int, words: int, found: int, seconds: float, fmt: str) -> str:
    """The closing line's numbers: what was tagged and how fast."""
    kind, unit = ("sentences", "sentences") if fmt == "conll" else ("documents", "docs")
    seconds = max(seconds, 1e-9)
    return (f"tagged {units} {kind} ({words} words, {found} entities) in {seconds:.2f} s: "
            f"{units / seconds:.1f} {unit}/s, {words / seconds:.0f} words/s")
