"""Load tc plugins (built-ins and the ``tc`` entry-point group) and collect what they register.

A plugin that fails to import, or whose hook raises, is skipped and recorded in ``failures``: one broken
package never takes the CLI down. A name registered twice is rejected: the first registration stays and
the failure names both plugins.
``TC_LOAD_PLUGINS`` (comma list of plugin names, empty for none) restricts which third-party plugins load.
"""

from __future__ import annotations

import functools
import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from tc.core.errors import PluginError
from tc.core.interfaces import Backend, Registry, Task
from tc.plugins import hookspecs

GROUP = "tc"
BUILTIN_PLUGINS = (
    "tc.backends.cpu",
    "tc.backends.cuda",
    "tc.backends.deepspeed",
    "tc.backends.cerebras",
    "tc.tasks.token_cls.plugin",
)


@dataclass
class PluginInfo:
    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False


@dataclass
class PluginFailure:
    name: str
    stage: str
    """"import" or the hook that raised."""
    error: str
    detail: str = ""


@dataclass
class Plugins:
    """Everything loaded: the registry plus what each plugin is and what went wrong."""

    registry: Registry
    plugins: list[PluginInfo]
    failures: list[PluginFailure]
    pm: pluggy.PluginManager

    def backend(self, name: str) -> type[Backend]:
        from tc.core.errors import ConfigError

        cls = self.registry.backends.get(name)
        if cls is None:
            raise ConfigError(f"unknown backend {name!r} (valid: {', '.join(sorted(self.backend_names()))})")
        return cls

    def backend_names(self) -> list[str]:
        return [n for n, c in self.registry.backends.items() if n == c.name]

    def task(self, name: str) -> type[Task]:
        from tc.core.errors import ConfigError

        cls = self.registry.tasks.get(name)
        if cls is None:
            raise ConfigError(f"unknown task {name!r} (valid: {', '.join(sorted(self.registry.tasks))})")
        return cls


def _version(dist: Any) -> str:
    return getattr(dist, "version", None) or "?"


def _selected() -> set[str] | None:
    raw = os.environ.get("TC_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _hook_names(plugin: object) -> list[str]:
    return sorted(n for n in dir(plugin) if n.startswith("register_") and hasattr(getattr(plugin, n), "tc_impl"))


@functools.cache
def load_plugins() -> Plugins:
    """Import built-ins and entry points, call the register hooks, and return the result."""
    import tc

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    failures: list[PluginFailure] = []

    for module_name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            failures.append(PluginFailure(module_name, "import", _one_line(exc), traceback.format_exc()))
            continue
        pm.register(module, name=module_name)
        infos.append(PluginInfo(module_name, tc.__version__, _hook_names(module), builtin=True))

    selected = _selected()
    for ep in entry_points(group=GROUP):
        if ep.value in BUILTIN_PLUGINS or (selected is not None and ep.name not in selected):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            failures.append(PluginFailure(ep.name, "import", _one_line(exc), traceback.format_exc()))
            continue
        if pm.is_registered(plugin) or pm.has_plugin(ep.name):
            failures.append(PluginFailure(ep.name, "import", "plugin registered twice under one name"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # e.g. a hook with a wrong signature
            failures.append(PluginFailure(ep.name, "register", _one_line(exc), traceback.format_exc()))
            continue
        infos.append(PluginInfo(ep.name, _version(ep.dist), _hook_names(plugin)))

    registry = Registry()
    _collect(pm, registry, failures)
    return Plugins(registry, infos, failures, pm)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, PluginError):
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _collect(pm: pluggy.PluginManager, registry: Registry, failures: list[PluginFailure]) -> None:
    """Call each register hook one implementation at a time, so a failing plugin stays contained."""
    for hook in ("register_backends", "register_tasks", "register_models"):
        for impl in getattr(pm.hook, hook).get_hookimpls():  # registration order: built-ins first
            try:
                impl.function(_registrar(hook, impl.plugin_name, registry))
            except Exception as exc:  # includes PluginError for duplicate names
                failures.append(PluginFailure(impl.plugin_name, hook, _one_line(exc), traceback.format_exc()))


def _registrar(hook: str, plugin_name: str, registry: Registry) -> Any:
    def claim(kind: str, name: str) -> None:
        owner = registry.providers.get((kind, name))
        if owner is not None:
            raise PluginError(f"{kind[:-1]} {name!r} is registered twice: by {owner} and by {plugin_name}")
        registry.providers[(kind, name)] = plugin_name

    def register_backend(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"register_backends expects Backend subclasses, got {cls!r}")
        for name in (cls.name, *cls.aliases):
            claim("backends", name)
            registry.backends[name] = cls

    def register_task(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"register_tasks expects Task subclasses, got {cls!r}")
        claim("tasks", cls.name)
        registry.tasks[cls.name] = cls

    def register_model(name: str, builder: Any) -> None:
        claim("models", name)
        registry.models[name] = builder

    return {"register_backends": register_backend, "register_tasks": register_task,
            "register_models": register_model}[hook]


def add_commands(pm: pluggy.PluginManager, cli: Any) -> list[PluginFailure]:
    """Let plugins add CLI commands; a plugin whose hook raises is reported, not fatal."""
    failures = []
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli)
        except Exception as exc:
            failures.append(PluginFailure(impl.plugin_name, "register_commands", _one_line(exc)))
    return failures
