"""The contract of a process launcher: how a backend starts several processes of one ``tc`` invocation
(torchrun, a multi-node launcher) for a command that shards its own work over ranks without setting that
backend up (``tc predict --num-processes N``).

``Backend.process_launcher`` returns one (None: the backend cannot run several processes) and the command
asks the registry for it (``Plugins.process_launcher``), so the command names no backend. Apart from
``interfaces`` because the rest of tc's contracts never need it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path


class ProcessLauncher(ABC):
    """Starts the ranks of one ``tc`` invocation; every rank runs the same arguments."""

    @abstractmethod
    def under_launcher(self) -> bool:
        """This process is a rank a launcher started: it runs its share and never relaunches."""

    @abstractmethod
    def planned_world(self, num_processes: int | None, hostfile: Path | None) -> int:
        """Ranks ``--num-processes`` / ``--hostfile`` will start; its errors name those flags."""

    @abstractmethod
    def relaunch_command(self, num_processes: int | None, hostfile: Path | None, world: int,
                         argv: Sequence[str]) -> list[str]:
        """The command that runs ``tc argv`` (the original arguments) on ``world`` ranks."""
