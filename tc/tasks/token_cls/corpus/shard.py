"""Sharding ``tc predict`` over processes with the process launcher a registered backend offers
(``Backend.process_launcher``: torchrun, or a multi-node launcher with a hostfile), and no process group.

Every rank reads the whole input and tags chunks ``rank, rank + W, rank + 2W, ...`` into its own shard of
``OUT.partial/``; the ranks never talk to each other. Rank 0, when its own shard is done, waits for every
shard's state to say complete (files, so multi-node needs ``OUT`` on a filesystem all nodes share) and
merges them in input order. torchrun stops every rank when one fails, so rank 0 never waits for a dead
peer; a rerun resumes each shard where it stopped.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.core.errors import ConfigError, TcError

if TYPE_CHECKING:
    from tc.core.launching import ProcessLauncher

POLL_SECONDS = 0.2
THREAD_KEYS = ("runconfig.num_threads=", "cpu.num_threads=")  # the 2nd: its deprecated alias, still accepted


@dataclass(frozen=True)
class Rank:
    """This process's place in a launch (rank 0 of 1 outside any launcher)."""

    rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_rank() -> Rank:
    """From the variables torchrun and DeepSpeed's launcher set (RANK, WORLD_SIZE, LOCAL_WORLD_SIZE)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", str(world))))
    if not 0 <= rank < world:
        raise TcError(f"RANK={rank} is outside WORLD_SIZE={world} (set by the launcher)")
    return Rank(rank, world, max(local, 1))


LAUNCH_ENV = "TC_PREDICT_LAUNCH"


def launch_token() -> str:
    """The same string on every rank of one launch and a new one for the next launch: set by ``launch``,
    else (your own torchrun) read off the rendezvous the launcher gave the ranks."""
    if LAUNCH_ENV in os.environ:
        return os.environ[LAUNCH_ENV]
    return ":".join(os.environ.get(k, "") for k in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                                                     "TORCHELASTIC_RESTART_COUNT"))


def _registered_launcher() -> ProcessLauncher | None:
    """The registry's process launcher: this module names no backend."""
    from tc.plugins.manager import load_plugins

    return load_plugins().process_launcher()


def _launcher(flag: str) -> ProcessLauncher:
    launcher = _registered_launcher()
    if launcher is None:
        raise ConfigError(f"{flag}: no registered backend can run several processes")
    return launcher


def under_launcher() -> bool:
    """This process is one rank of a launch (without a launcher, it cannot be)."""
    launcher = _registered_launcher()
    return launcher is not None and launcher.under_launcher()


def planned_world(num_processes: int | None, hostfile: Path | None) -> int:
    """Ranks ``--num-processes`` / ``--hostfile`` will start (the launcher's own count)."""
    if num_processes is None and hostfile is None:
        return 1
    return _launcher(_flag(num_processes, hostfile)).planned_world(num_processes, hostfile)


def launch(num_processes: int | None, hostfile: Path | None, world: int, argv: Sequence[str]) -> None:
    """Become the launcher (exec, so Ctrl-C and kill reach it and its ranks), running ``tc argv`` on
    ``world`` ranks through the launcher's ``relaunch_command``."""
    command = _launcher(_flag(num_processes, hostfile)).relaunch_command(num_processes, hostfile, world, list(argv))
    os.environ[LAUNCH_ENV] = uuid.uuid4().hex  # inherited by the launcher and every rank it starts
    if hostfile is None:  # one machine: say the cores per rank, rather than torchrun's banner about it
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // world)))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def _flag(num_processes: int | None, hostfile: Path | None) -> str:
    return f"--num-processes {num_processes}" if num_processes else f"--hostfile {hostfile}"


def thread_overrides(overrides: Sequence[str], backend: str, rank: Rank) -> list[str]:
    """Share the cores between the ranks on one machine: the cpu backend otherwise gives every rank all
    of them (and 2 ranks x all cores is slower than 1). A user's own thread setting wins."""
    if rank.local_world <= 1 or backend != "cpu" or any(o.startswith(THREAD_KEYS) for o in overrides):
        return list(overrides)
    return [*overrides, f"runconfig.num_threads={max(1, _cores() // rank.local_world)}"]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def wait_for_shards(output: Path, world: int, launch: str) -> list[dict[str, Any]]:
    """Rank 0: block until every shard's state says complete and was opened by this launch (not a state
    left by an earlier one, which a slow peer is about to reopen); returns the states."""
    from tc.tasks.token_cls.corpus.resume import shard_states

    while True:
        states = shard_states(output, world)
        if all(s.get("complete") and s.get("launch") == launch for s in states):
            return states
        time.sleep(POLL_SECONDS)
