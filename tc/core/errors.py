"""User-facing errors: the CLI prints ``str(error)`` as one line and exits with ``exit_code``.

Anything else escaping is a bug in tc and keeps its traceback (or shows it with ``--debug``).
"""

from __future__ import annotations

import re


class TcError(Exception):
    """A problem the user can fix; the message names the file, line or key at fault."""

    exit_code = 2


class ConfigError(TcError):
    """Bad YAML, unknown key, wrong type, bad ``--set`` or an unknown task/backend/model name."""


class DataError(TcError):
    """A data or vocab file that is missing, unreadable or malformed."""


class CheckpointError(TcError):
    """A checkpoint that is missing, corrupt, unsafe or does not fit the model."""


class PluginError(TcError):
    """A plugin registered something twice or registered an invalid object."""


class BackendUnavailable(TcError):
    """The chosen backend cannot run on this machine; the message says why."""


class TrainingAborted(TcError):
    """Training stopped early on purpose (signal, non-finite loss); a checkpoint was kept."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 200, sentence: bool = False) -> str:
    """The first line of ``exc``'s message (``sentence``: only its first sentence), at most ``limit``
    characters, or the exception's type name when it has no message.

    Libraries (torch, DeepSpeed, cstorch) append paragraphs of advice and C++ locations to their
    errors; a user error is one line, so every place that quotes a library's error quotes this.
    """
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", str(exc).strip())
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if sentence:  # split before stripping: a line ending in ". " still ends its sentence there
        return lines[0].split(". ")[0].strip().rstrip(".")[:limit]
    return lines[0].strip()[:limit]
