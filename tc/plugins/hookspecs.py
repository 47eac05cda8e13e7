"""The hooks a tc plugin can implement. Each takes a ``register`` callback (or the CLI group).

A plugin is a module (or any object) with functions decorated ``@tc.plugins.hookimpl``, listed under
the ``tc`` entry-point group of its package::

    [project.entry-points.tc]
    my_plugin = "my_package.plugin"

A ``@hookimpl`` function whose name is none of the hooks below (``register_backend`` for
``register_backends``) would never be called; the loader reports such a plugin as failed instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("tc")
hookimpl = pluggy.HookimplMarker("tc")


@hookspec
def register_backends(register: Callable[[type], None]) -> None:
    """Register Backend subclasses: ``register(MyBackend)``; names (and aliases) must be unique."""


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register Task subclasses: ``register(MyTask)``; ``MyTask.name`` is what ``--task`` selects."""


@hookspec
def register_models(register: Callable[[str, Any], None]) -> None:
    """Register models: ``register("bert", BertModel)``, a ``tc.core.interfaces.Model`` (the ``model``
    section's schema and ``build``); a task builds the one ``model.name`` names (``--set model.name=...``)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``tc`` command group: ``@cli.command() def hello(): ...``."""
