"""User-facing errors: the CLI prints ``str(error)`` as one line and exits with ``exit_code``.

Anything else escaping is a bug in tc and keeps its traceback (or shows it with ``--debug``).
"""

from __future__ import annotations


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
