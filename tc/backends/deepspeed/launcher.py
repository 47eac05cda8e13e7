"""Starting the ranks: how many a launch will start, and the torchrun / deepspeed-launcher command that
runs this same ``tc`` invocation on them (tc execs it, so signals reach the launcher and its ranks).
``FlagLauncher`` offers the same to commands that shard their own work (``tc predict --num-processes``)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from tc.backends.deepspeed.env import under_launcher
from tc.backends.deepspeed.settings import DeepSpeedSettings
from tc.core.errors import ConfigError
from tc.core.launching import ProcessLauncher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hostfile_slots(path: Path) -> list[int]:
    """Slots per host of a DeepSpeed hostfile (``worker-1 slots=4``), so the world size is known early."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"deepspeed.hostfile: cannot read {path} ({exc.strerror or exc})") from None
    slots = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        found = [w.split("=", 1)[1] for w in words[1:] if w.startswith("slots=")]
        if len(found) != 1 or not found[0].isdigit() or int(found[0]) < 1:
            raise ConfigError(f"{path}:{number}: expected 'HOST slots=N', got {line.strip()!r}")
        slots.append(int(found[0]))
    if not slots:
        raise ConfigError(f"deepspeed.hostfile: {path} lists no hosts")
    return slots


def planned_world_size(settings: DeepSpeedSettings) -> int:
    """Ranks a launch will start: hosts x per-node processes with a hostfile, else num_processes."""
    if settings.hostfile is None:
        return settings.num_processes or 1
    slots = hostfile_slots(settings.hostfile)
    return len(slots) * settings.num_processes if settings.num_processes else sum(slots)


def launch_command(s: DeepSpeedSettings, world: int, argv: list[str]) -> list[str]:
    """torchrun on one machine, DeepSpeed's launcher with a hostfile (or when asked), running ``tc argv``."""
    port = str(s.master_port or free_port())
    if (s.launcher or ("deepspeed" if s.hostfile else "torchrun")) == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
                str(world), "--master_addr", "127.0.0.1", "--master_port", port, "-m", "tc.cli", *argv]
    command = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", port,
               "--no_local_rank"]
    if s.hostfile is not None:
        command += ["--hostfile", str(s.hostfile)]
    if s.num_processes:
        command += ["--num_gpus", str(s.num_processes)]
    return [*command, "--module", "tc.cli", *argv]


class FlagLauncher(ProcessLauncher):
    """This launcher driven by ``--num-processes`` / ``--hostfile`` alone (no ``deepspeed:`` section, no
    DeepSpeed import: torchrun comes with torch), for a command whose ranks run another backend."""

    def under_launcher(self) -> bool:
        return under_launcher()

    def planned_world(self, num_processes: int | None, hostfile: Path | None) -> int:
        try:
            return planned_world_size(DeepSpeedSettings(num_processes=num_processes, hostfile=hostfile))
        except ConfigError as exc:  # its messages name the YAML key; here the user typed a flag
            raise ConfigError(str(exc).replace("deepspeed.hostfile", "--hostfile")) from None

    def relaunch_command(self, num_processes: int | None, hostfile: Path | None, world: int,
                         argv: Sequence[str]) -> list[str]:
        return launch_command(DeepSpeedSettings(num_processes=num_processes, hostfile=hostfile), world, list(argv))
