"""Filesystem checks done before work starts, so a bad output path fails in one line, not mid-run."""

from __future__ import annotations

from pathlib import Path

from tc.core.errors import ConfigError


def ensure_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` and prove a file can be written there; ``what`` names it in the error."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what}: {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".tc-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{what}: {path} is not writable ({exc.strerror or exc})") from None
