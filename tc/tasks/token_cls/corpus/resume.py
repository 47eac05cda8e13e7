"""Resumable output: an append-only partial folder beside ``--output`` that a rerun continues.

``tc predict -i IN -o OUT`` writes into ``OUT.partial/``: per shard (one, or one per rank) the output
text ``shard-R-of-W.out``, an index ``shard-R-of-W.idx`` (the byte length of each finished chunk, 8 bytes
each) and a state file ``shard-R-of-W.json`` (what is being tagged, and how many chunks and bytes are
finished). After every chunk the text and index are fsynced, then the state is replaced atomically, so
the state never claims bytes that are not on disk. A rerun first truncates the text and index to what
the state records (a record half-written by a kill -9 disappears), then continues with the next chunk.
At the end the shards are merged in input order (one shard: renamed) onto OUT and the folder is removed.

The state names the run: the input's size, mtime and hashes of its first and last MiB, the model
directory and the size and mtime of its weights and calibration, and every setting that changes the
output (``--format``, ``--precision``, ``--chunk-size``, ...). A rerun that differs in any of them is
refused with one line naming what differs, never silently mixed into the old output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tc.core.errors import DataError, TcError
from tc.core.fs import atomic_write_text, check_replace, fsync_dir, write_errors

MAGIC = "tc predict partial output"
VERSION = 1
HEAD_BYTES = 1 << 20
INDEX_ENTRY = struct.Struct("<Q")
START_OVER = "pass --overwrite to start over"


class ResumeError(TcError):
    """A rerun that cannot continue the partial output it finds (another input, model or setting)."""


def partial_dir(output: Path) -> Path:
    """Where a run into ``output`` keeps its unfinished work: ``OUT.partial/`` beside it."""
    return output.with_name(output.name + ".partial")


# ---------------------------------------------------------------------------------------------
# What a run is
# ---------------------------------------------------------------------------------------------


def _stamp(path: Path) -> dict[str, Any] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return {"path": str(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def input_identity(path: Path) -> dict[str, Any]:
    """Size, mtime and the hashes of the first and last MiB: a changed or replaced input is noticed
    without reading a corpus of gigabytes."""
    stamp = _stamp(path.resolve())
    assert stamp is not None
    with open(path, "rb") as handle:
        head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
        handle.seek(max(0, stamp["size"] - HEAD_BYTES))
        tail = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    return {**stamp, "head_sha256": head, "tail_sha256": tail}


def model_identity(model_dir: Path, checkpoint: Path | None) -> dict[str, Any]:
    """The model directory and the files whose change changes predictions (weights, calibration)."""
    from tc.tasks.token_cls.model_dir import weight_candidates

    folder = model_dir.expanduser().resolve()
    weights = checkpoint.expanduser().resolve() if checkpoint is not None else None
    if weights is None and folder.is_dir():
        weights = next(iter(weight_candidates(folder)), None)
    return {"model_dir": str(folder), "weights": None if weights is None else _stamp(weights),
            "calibration": _stamp(folder / "calibration.json")}


def run_identity(input_path: Path, model_dir: Path, checkpoint: Path | None, settings: dict[str, Any]
                 ) -> dict[str, Any]:
    """Everything a resumed run must share with the interrupted one (``settings``: flag -> value)."""
    return {"input": input_identity(input_path), "model": model_identity(model_dir, checkpoint),
            "settings": settings}


def _when(stamp: dict[str, Any] | None) -> str:
    if stamp is None:
        return "absent"
    moment = datetime.fromtimestamp(stamp["mtime_ns"] / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp['path']}, {stamp['size']:,} bytes, modified {moment}"


def difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between an interrupted run and this one, as the clause of a one-line error."""
    old_in, new_in = old["input"], new["input"]
    if any(old_in[k] != new_in[k] for k in ("size", "mtime_ns", "head_sha256", "tail_sha256")):
        return (f"over another input ({_when(old_in)}) than --input {new_in['path']} ({new_in['size']:,} bytes); "
                f"rerun with that input, or {START_OVER}")
    old_model, new_model = old["model"], new["model"]
    if old_model != new_model:
        what = next(k for k in ("model_dir", "weights", "calibration") if old_model[k] != new_model[k])
        was = old_model[what] if what == "model_dir" else f"{what} {_when(old_model[what])}"
        return f"with another model ({was}); rerun with that model, or {START_OVER}"
    for flag, value in old["settings"].items():
        now = new["settings"].get(flag)
        if now != value:
            shown = " ".join(value) if isinstance(value, list) else value
            return (f"with {flag} {shown or '(none)'}, not {' '.join(now) if isinstance(now, list) else now}; "
                    f"rerun with {flag} {shown or '(none)'}, or {START_OVER}")
    return None


# ---------------------------------------------------------------------------------------------
# The partial folder
# ---------------------------------------------------------------------------------------------


def _states(folder: Path) -> dict[Path, dict[str, Any]]:
    """Every shard state in ``folder`` (unreadable ones as ``{}``)."""
    found: dict[Path, dict[str, Any]] = {}
    for path in sorted(folder.glob("shard-*-of-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = {}
        found[path] = data if isinstance(data, dict) and data.get("format") == MAGIC else {}
    return found


def check_partial(output: Path, identity: dict[str, Any], world: int, overwrite: bool, own_rank: int | None
                  ) -> dict[str, Any] | None:
    """Refuse (or, with ``overwrite``, clear) an interrupted run into ``output`` that this run cannot
    continue; returns one state of a run it continues, else None.

    ``own_rank`` None: the whole folder is this process's (one process, or before launching ranks).
    A rank clears only its own shard, and rank 0 also the shards of another world size, so that ranks
    never delete each other's files while they run.
    """
    folder = partial_dir(output)
    if not folder.is_dir():
        return None
    continued = None
    for path, state in _states(folder).items():
        shard_world = int(path.stem.rsplit("-of-", 1)[1]) if path.stem.rsplit("-of-", 1)[1].isdigit() else -1
        mine = own_rank is None or path.stem == f"shard-{own_rank}-of-{world}" or (own_rank == 0 and
                                                                                    shard_world != world)
        if overwrite:
            if mine:
                for suffix in (".json", ".out", ".idx"):
                    path.with_suffix(suffix).unlink(missing_ok=True)
            continue
        if not state:
            raise ResumeError(f"--output {output}: {path} is unreadable; {START_OVER}")
        if shard_world != world:
            raise ResumeError(f"--output {output}: {folder} holds an interrupted run with --num-processes "
                              f"{shard_world}, not {world}; rerun with --num-processes {shard_world}, or {START_OVER}")
        why = difference(state["run"], identity)
        if why is not None:
            raise ResumeError(f"--output {output}: {folder} holds an interrupted run {why}")
        continued = state
    if overwrite and own_rank is None:
        shutil.rmtree(folder, ignore_errors=True)
    return continued


def check_output_exists(output: Path, overwrite: bool, continued: dict[str, Any] | None) -> None:
    """An existing output is replaced only when asked (``--overwrite``, now or by the run resumed)."""
    check_replace(output, overwrite or bool((continued or {}).get("overwrite")))


@dataclass
class Shard:
    """One rank's append-only share of the output, and the state that says how much of it is final."""

    output: Path
    rank: int
    world: int

    @property
    def folder(self) -> Path:
        return partial_dir(self.output)

    def path(self, suffix: str, rank: int | None = None) -> Path:
        return self.folder / f"shard-{self.rank if rank is None else rank}-of-{self.world}{suffix}"

    def open(self, identity: dict[str, Any], overwrite: bool, launch: str = "") -> dict[str, Any]:
        """The state to continue from (fresh: nothing done); truncates what a kill left half-written.
        ``launch`` names this launch, so rank 0 merges only shards its own peers have opened."""
        fresh = {"format": MAGIC, "version": VERSION, "run": identity, "rank": self.rank, "world": self.world,
                 "overwrite": overwrite, "chunks": 0, "units": 0, "words": 0, "entities": 0, "bytes": 0,
                 "units_read": 0, "bytes_read": 0, "complete": False, "total_chunks": None}
        self.folder.mkdir(parents=True, exist_ok=True)
        state = fresh
        if self.path(".json").is_file():
            state = json.loads(self.path(".json").read_text(encoding="utf-8"))
        for suffix, size in ((".out", state["bytes"]), (".idx", state["chunks"] * INDEX_ENTRY.size)):
            target = self.path(suffix)
            if not target.exists():
                target.touch()
            if target.stat().st_size < size:
                raise ResumeError(f"--output {self.output}: {target} is shorter than its state "
                                  f"{self.path('.json')} records ({target.stat().st_size:,} < {size:,} bytes); "
                                  f"{START_OVER}")
            os.truncate(target, size)
        state["resumed"] = {k: state[k] for k in ("units", "words", "entities")}  # done by earlier runs
        state["launch"] = launch
        self.state = state
        self._save()
        return state

    def commit(self, text: str, units: int, words: int, entities: int, units_read: int, bytes_read: int) -> None:
        """Append one finished chunk durably, then record it (the order that makes a kill -9 harmless)."""
        data = text.encode("utf-8")
        with write_errors(self.path(".out")), open(self.path(".out"), "ab") as out, \
                open(self.path(".idx"), "ab") as index:
            out.write(data)
            index.write(INDEX_ENTRY.pack(len(data)))
            for handle in (out, index):
                handle.flush()
                os.fsync(handle.fileno())
        state = self.state
        state.update(chunks=state["chunks"] + 1, bytes=state["bytes"] + len(data), units=state["units"] + units,
                     words=state["words"] + words, entities=state["entities"] + entities, units_read=units_read,
                     bytes_read=bytes_read)
        self._save()

    def finish(self, total_chunks: int) -> None:
        self.state.update(complete=True, total_chunks=total_chunks)
        self._save()

    def _save(self) -> None:
        atomic_write_text(self.path(".json"), json.dumps(self.state, indent=1) + "\n")


def merge(output: Path, world: int, total_chunks: int) -> None:
    """Put the shards' chunks back in input order (chunk c is shard c % world's chunk c // world) and
    move the result onto ``output`` in one rename; then remove the partial folder."""
    with write_errors(output):
        _merge(output, world, total_chunks)


def _merge(output: Path, world: int, total_chunks: int) -> None:
    folder = partial_dir(output)
    shard = Shard(output, 0, world)
    if world == 1:
        merged = shard.path(".out")
    else:
        merged = folder / "merged.out"
        sources = [open(shard.path(".out", r), "rb") for r in range(world)]  # noqa: SIM115
        try:
            lengths = [_index(shard.path(".idx", r)) for r in range(world)]
            for r in range(world):
                expected = len(range(r, total_chunks, world))
                if len(lengths[r]) != expected:
                    raise DataError(f"{shard.path('.idx', r)}: {len(lengths[r])} chunks, expected {expected}; "
                                    f"{START_OVER}")
            with open(merged, "wb") as out:
                for chunk in range(total_chunks):
                    r, k = chunk % world, chunk // world
                    out.write(sources[r].read(lengths[r][k]))
                out.flush()
                os.fsync(out.fileno())
        finally:
            for source in sources:
                source.close()
    os.replace(merged, output)
    fsync_dir(output.parent)
    shutil.rmtree(folder, ignore_errors=True)


def _index(path: Path) -> list[int]:
    data = path.read_bytes()
    return [INDEX_ENTRY.unpack_from(data, i)[0] for i in range(0, len(data) - len(data) % INDEX_ENTRY.size,
                                                                  INDEX_ENTRY.size)]


def shard_states(output: Path, world: int) -> list[dict[str, Any]]:
    """The state of every shard of a ``world``-rank run (missing ones as ``{}``)."""
    found = []
    for rank in range(world):
        path = Shard(output, rank, world).path(".json")
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text(encoding="utf-8")))
            continue
        found.append({})
    return found
