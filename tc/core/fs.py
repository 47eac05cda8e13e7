"""Filesystem helpers: the one atomic write, and checks done before work starts.

Every file tc writes goes through :func:`atomic_writer` (or its two shorthands), so a crash, a kill -9
or a full disk leaves either the old file or the complete new one under a real name, never half of
one, and the new file gets the user's umask like any file ``open()`` creates.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tc.core.errors import ConfigError, DataError, TcError


class WriteError(DataError, OSError):
    """A write the system refused (read-only or forbidden folder, full disk, file size limit, a name too
    long): one line naming the path and the reason. Still an OSError, so code that handles failed
    writes in its own words (checkpoints, exports) keeps doing so."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})"


@contextlib.contextmanager
def write_errors(path: str | Path) -> Iterator[None]:
    """Turn a refused write inside the block into a :class:`WriteError` naming ``path``.

    Only errors of the write itself: an OSError that names another file (an input the block reads)
    keeps its own meaning, and an error already said in tc's words passes through."""
    try:
        yield
    except (TcError, OSError) as exc:
        if isinstance(exc, TcError) or (exc.filename is not None and not _ours(exc.filename, path)):
            raise
        raise WriteError(path, exc) from None


def _ours(filename: Any, path: str | Path) -> bool:
    """Whether an error's file is ``path``, its staging file, a folder on the way to it, or (``path``
    a folder) a file inside it."""
    name, target = Path(os.path.abspath(str(filename))), Path(os.path.abspath(path))
    staging = name.parent == target.parent and name.name.startswith(f".{target.name[:STAGING_STEM]}.")
    return staging or target.is_relative_to(name) or name.is_relative_to(target)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(path: str | Path) -> str | None:
    """What an existing ``path`` is when it is not a regular file ("a FIFO", "a character device", ...),
    following symlinks; None for a regular file or nothing at all. tc writes only regular files:
    renaming a new file over ``/dev/null`` or a FIFO would replace the device node or the pipe."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((what for test, what in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def check_replace(path: str | Path, overwrite: bool, flag: str = "--output",
                  choose: str = "choose another output file") -> None:
    """The rule of every writer, before any work starts: an output may replace only a regular file, and
    only with ``--overwrite``; ``choose`` ends the message (what else the user can do)."""
    kind = not_regular(path)
    if kind is not None and kind != "a directory":
        raise DataError(f"{flag} {path}: is {kind}, not a regular file; tc writes only regular files, {choose}")
    if os.path.lexists(path) and kind is None and not overwrite:
        raise DataError(f"{flag} {path}: exists; pass --overwrite to replace it, or {choose}")


def check_distinct(targets: Iterable[tuple[str, Path]], flag: str = "--output") -> None:
    """Never two outputs onto one path: ``targets`` are ``(what, path)`` pairs; two paths that are
    equal, or equal on a case-insensitive or Unicode-normalising file system, are refused."""
    import unicodedata

    prefix = f"{flag} " if flag else ""
    seen: dict[str, tuple[str, Path]] = {}
    for what, path in targets:
        key = unicodedata.normalize("NFC", str(path)).casefold()
        if key in seen:
            first, earlier = seen[key]
            alias = "" if str(earlier) == str(path) else f" (as {earlier}, on a case-insensitive file system)"
            raise DataError(f"{prefix}{path}: {first} and {what} would both be written there{alias}; give them "
                            "different names")
        seen[key] = (what, path)


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def current_umask() -> int:
    """The process umask, for folders made by ``tempfile.mkdtemp`` (always 0700) that users will share."""
    return _umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


STAGING_STEM = 100
"""Characters of the target's name a staging file keeps (``.NAME.XXXXXXXX.tmp``), so that any name the
file system allows can be staged beside itself."""


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                  newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. ``mode`` is ``"w"``
    (text) or ``"wb"`` (bytes). Parent folders are created. A write the system refuses (a read-only
    folder, a full disk, a name too long) is a :class:`WriteError` naming ``path``, and a ``path``
    that is not a regular file (a FIFO, a device) is refused before anything is written.
    """
    path = Path(path)
    kind = not_regular(path)
    if kind is not None:
        raise DataError(f"{path}: is {kind}, not a regular file; tc writes only regular files")
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:STAGING_STEM]}.", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_umask())
            binary = "b" in mode
            with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else encoding,
                           newline=None if binary else newline) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


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


# ---------------------------------------------------------------------------------------------
# Outputs never land on inputs
# ---------------------------------------------------------------------------------------------

PathLike = str | os.PathLike[str]
Named = Mapping[str, PathLike | None] | Sequence[PathLike | None]


def _named(paths: Named, default: str) -> list[tuple[str, Path]]:
    """``(what, path)`` pairs from a mapping (what -> path) or a plain sequence (all called ``default``)."""
    items = paths.items() if isinstance(paths, Mapping) else ((default, p) for p in paths)
    return [(name, Path(p).expanduser()) for name, p in items if p is not None and str(p) not in ("", "-")]


def _real(path: Path) -> Path:
    """The absolute path with every symlink resolved (the part that exists), so aliases compare equal."""
    return Path(os.path.realpath(path.expanduser()))


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file: equal for hard links, which no path comparison sees."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _tree_files(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` (a model directory: a few dozen entries), symlinks not followed."""
    for root, _, files in os.walk(folder):
        for name in files:
            yield Path(root) / name


def check_output(path: PathLike, inputs: Named = (), protected_dirs: Named = (), flag: str = "--output",
                 kind: str = "file", replaceable: Iterable[str] = ()) -> Path:
    """Refuse an output that would overwrite something the command reads, before any work starts.

    The one rule every writing command applies (``tc predict``, ``tc export``, ``tc prepare``,
    ``tc report``, ``tc run``'s model directory), so that nothing a user types loses data:

    * ``kind="file"``: ``path`` may not be the same file as any of ``inputs`` (compared by resolved
      real path, so symlinks count, and by device and inode, so hard links count), nor an existing file
      inside ``protected_dirs`` (a model directory) unless its name matches a ``replaceable`` pattern.
    * ``kind="dir"``: ``path`` (a folder the command fills) may not be, or contain, any of ``inputs``
      or ``protected_dirs``.

    ``inputs`` and ``protected_dirs`` are mappings from what the user typed (``"--input"``) to a path,
    or plain sequences; ``None`` and ``-`` (stdin/stdout) are skipped. Returns ``path`` as a Path;
    raises :class:`ConfigError` whose message starts with ``flag``.
    """
    out = Path(path).expanduser()
    real = _real(out)
    named_inputs = _named(inputs, "input")
    named_dirs = _named(protected_dirs, "model directory")
    if kind == "dir":
        for what, source in [*named_inputs, *named_dirs]:
            source_real = _real(source)
            if source_real == real or (source.exists() and out.exists() and os.path.samefile(source, out)):
                raise ConfigError(f"{flag}: {out} is the {what} {source}; choose a new folder")
            if _is_within(source_real, real):
                raise ConfigError(f"{flag}: {out} contains the {what} {source}; choose a new folder")
        return out
    if kind != "file":
        raise ValueError(f"kind={kind!r}: expected 'file' or 'dir'")
    if out.is_dir():
        return out  # no file can be written there; the command says so in its own words
    out_id = _file_id(out) if out.is_file() else None
    for what, source in named_inputs:
        if _real(source) == real or (out_id is not None and _file_id(source) == out_id):
            raise ConfigError(f"{flag}: {out} is the {what} file {source}; choose another output file")
    patterns = tuple(replaceable)
    for what, folder in named_dirs:
        if not folder.is_dir():
            continue
        inside = _is_within(real, _real(folder))
        if inside and out.exists() and not any(fnmatch.fnmatch(real.name, p) for p in patterns):
            alias = f" is a link to {real}," if out.is_symlink() else " is"
            raise ConfigError(f"{flag}: {out}{alias} a file of the {what} {folder}; choose another output file")
        if out_id is not None:  # a hard link shares its bytes, whatever its name or folder
            twin = next((f for f in _tree_files(folder) if _file_id(f) == out_id and _real(f) != real), None)
            if twin is not None:
                raise ConfigError(f"{flag}: {out} is the same file as {twin} (a hard link into the {what} "
                                  f"{folder}); choose another output file")
    return out


PATH_KEYS = ("_dir", "_file", "_path")
NOT_INPUTS = frozenset({"runconfig.model_dir", "runconfig.checkpoint_path"})
"""Path keys of a run config that are not inputs the model directory must keep clear of: the model
directory itself, and a checkpoint to start from (often the model directory's own: that is resuming)."""


def config_inputs(cfg: Any) -> dict[str, Path]:
    """``section.key -> path`` of every path a run config reads (data folders, vocab and label files, a
    pretrained folder), found by key name like config path resolution does, so a plugin's keys count too."""
    found: dict[str, Path] = {}
    for section, value in dict(cfg).items():
        fields = dict(value) if hasattr(value, "model_fields") else {}
        for key, item in fields.items():
            name = f"{section}.{key}"
            if item is None or name in NOT_INPUTS or not isinstance(item, str | os.PathLike):
                continue
            if key.endswith(PATH_KEYS) or (key == "pretrained" and Path(item).expanduser().is_dir()):
                found[name] = Path(item)
    return found


def check_model_dir(cfg: Any, flag: str = "runconfig.model_dir") -> Path:
    """A run's model directory may not be, or contain, anything the run reads (``tc run --model-dir
    data/x`` would mix checkpoints into the data and overwrite same-named files)."""
    return check_output(cfg.runconfig.model_dir, inputs=config_inputs(cfg), kind="dir", flag=flag)
