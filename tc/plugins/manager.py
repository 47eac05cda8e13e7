"""Load tc plugins (the ``tc`` entry-point group) and collect what they register.

tc's own backends and task are entry points of the tc distribution, loaded exactly like third-party
ones, only first. A plugin that fails to import, implements a hook that does not exist (a misspelling
such as ``register_backend``, found by pluggy's ``check_pending``), or whose hook raises, is skipped and
recorded in ``failures``: one broken package never takes the CLI down. A name registered twice is
rejected: the first registration stays and the failure names both plugins; so is a CLI command whose
name is taken (``add_commands``: click would silently replace ``tc run``).
``TC_LOAD_PLUGINS`` (comma list of plugin names, empty for none) restricts which third-party plugins load.
"""

from __future__ import annotations

import difflib
import functools
import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from tc.core.errors import PluginError
from tc.core.interfaces import Backend, Registry, Task
from tc.core.launching import ProcessLauncher
from tc.plugins import hookspecs

GROUP = "tc"


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

    def process_launcher(self) -> ProcessLauncher | None:
        """The process launcher of the first registered backend that has one (built-ins first), for a
        command that runs itself on several processes without setting that backend up (``tc predict
        --num-processes``), so that the command names no backend. None: no backend can."""
        for name in self.backend_names():
            launcher = self.registry.backends[name].process_launcher()
            if launcher is not None:
                return launcher
        return None


def registered_model(name: str, where: str) -> Any:
    """The model registered as ``name``; ``where`` (a config key or file) is named when there is none.
    Here, not in a task, so that reading a model directory needs no task module."""
    from tc.core.errors import ConfigError

    models = load_plugins().registry.models
    if name not in models:
        raise ConfigError(f"{where}: unknown model {name!r} (valid: {', '.join(sorted(models))})")
    return models[name]


def _version(dist: Any) -> str:
    return getattr(dist, "version", None) or "?"


def _selected() -> set[str] | None:
    raw = os.environ.get("TC_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _check_selected(selected: set[str] | None, found: list[Any]) -> None:
    """A name in TC_LOAD_PLUGINS that no installed plugin has is a typo or a missing install: say so,
    rather than run without the plugin the user asked for."""
    unknown = sorted((selected or set()) - {ep.name for ep in found})
    if unknown:
        from tc.core.errors import ConfigError

        installed = sorted({ep.name for ep in found if not _is_builtin(ep)})
        raise ConfigError(f"TC_LOAD_PLUGINS={os.environ.get('TC_LOAD_PLUGINS', '')}: no installed plugin named "
                          f"{unknown[0]!r} (installed: {', '.join(installed) or 'none'}; empty loads none)")


def _is_builtin(ep: Any) -> bool:
    """An entry point of the tc distribution itself (by its metadata; by module when that is unknown)."""
    dist = getattr(ep, "dist", None)
    if dist is not None and dist.name:
        return dist.name.lower() == "tc"
    return ep.value.split(":")[0].split(".")[0] == "tc"


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

    selected = _selected()
    found = list(entry_points(group=GROUP))
    _check_selected(selected, found)
    builtins = [ep for ep in found if _is_builtin(ep)]
    if not builtins:
        failures.append(PluginFailure("tc", "import", "tc's own entry points are missing (tc is not installed: "
                                      "pip install -e . in the checkout)"))
    third_party = [ep for ep in found if not _is_builtin(ep) and (selected is None or ep.name in selected)]
    for ep in [*builtins, *third_party]:  # built-ins first: on a name clash the built-in keeps it
        builtin = ep in builtins
        name = ep.value if builtin else ep.name
        try:
            plugin = ep.load()
        except Exception as exc:
            failures.append(PluginFailure(name, "import", _one_line(exc), traceback.format_exc()))
            continue
        if pm.is_registered(plugin) or pm.has_plugin(name):
            failures.append(PluginFailure(name, "import", "plugin registered twice under one name"))
            continue
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook with a wrong signature
            failures.append(PluginFailure(name, "register", _one_line(exc), traceback.format_exc()))
            continue
        unknown = _unknown_hooks(pm, plugin)
        if unknown is not None:
            pm.unregister(plugin)
            failures.append(PluginFailure(name, "register", unknown))
            continue
        infos.append(PluginInfo(name, tc.__version__ if builtin else _version(ep.dist), _hook_names(plugin),
                                builtin=builtin))

    registry = Registry()
    _collect(pm, registry, failures)
    return Plugins(registry, infos, failures, pm)


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """Why ``plugin`` (just registered) fails pluggy's ``check_pending``: a hookimpl no hookspec declares,
    which pluggy would otherwise keep and never call. None when every hook it implements exists."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pass
    else:
        return None
    known = sorted(n for n in dir(hookspecs) if n.startswith("register_"))
    names = sorted(n for n, caller in vars(pm.hook).items()
                   if isinstance(caller, pluggy.HookCaller) and caller.spec is None
                   and any(impl.plugin is plugin for impl in caller.get_hookimpls()))
    name = names[0] if names else "?"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"tc's hooks: {', '.join(known)}"
    return f"unknown hook {name!r} ({hint}); the plugin is not loaded"


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

    def register_model(name: str, model: Any) -> None:
        if not (hasattr(model, "config_model") and callable(getattr(model, "build", None))):
            raise TypeError(f"register_models expects a tc.core.interfaces.Model (config_model and build), "
                            f"got {model!r} for {name!r}")
        claim("models", name)
        registry.models[name] = model

    return {"register_backends": register_backend, "register_tasks": register_task,
            "register_models": register_model}[hook]


def add_commands(pm: pluggy.PluginManager, cli: Any) -> list[PluginFailure]:
    """Let plugins add CLI commands; a plugin whose hook raises is reported, not fatal.

    A command name already taken (tc's own ``run``, a built-in plugin's ``predict``, an earlier plugin's
    command, at any depth: ``prepare token_cls``) is refused: click's ``add_command`` silently replaces
    the old command, so after each plugin's hook any command it replaced or removed is put back and the
    plugin is reported. Its other commands stay, as a raising hook's earlier commands do.
    """
    failures = []
    owners = dict.fromkeys(_commands(cli), "tc")
    for impl in pm.hook.register_commands.get_hookimpls():  # registration order: built-ins first
        before = _commands(cli)
        try:
            impl.function(cli)
        except Exception as exc:
            failures.append(PluginFailure(impl.plugin_name, "register_commands", _one_line(exc)))
        for why in _restore(cli, before, owners, impl.plugin_name):
            failures.append(PluginFailure(impl.plugin_name, "register_commands", why))
        for path in _commands(cli):
            owners.setdefault(path, impl.plugin_name)
    return failures


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command under ``group`` by its path (``("prepare", "token_cls")``), groups included."""
    found: dict[tuple[str, ...], Any] = {}
    for name, command in dict(getattr(group, "commands", {})).items():
        found[(*prefix, name)] = command
        found.update(_commands(command, (*prefix, name)))
    return found


def _restore(cli: Any, before: dict[tuple[str, ...], Any], owners: dict[tuple[str, ...], str],
             plugin: str) -> list[str]:
    """Put back each command of ``before`` that ``plugin``'s hook replaced or removed (parents first, so
    a replaced group comes back with its own commands); returns why, one line per command put back."""
    put_back = []
    for path in sorted(before, key=len):
        parent = cli if len(path) == 1 else before[path[:-1]]
        current = parent.commands.get(path[-1])
        if current is before[path]:
            continue
        parent.add_command(before[path], path[-1])
        name, owner = " ".join(path), owners.get(path, "tc")
        put_back.append(f"command {name!r} is registered twice: by {owner} and by {plugin}; {owner}'s stays"
                        if current is not None else
                        f"command {name!r} of {owner} was removed by {plugin}; it is put back")
    return put_back
