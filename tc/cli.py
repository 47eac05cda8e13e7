"""The ``tc`` command line: parses arguments, calls the core, renders results with rich.

User errors (``TcError``) print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import tc
from tc.core.errors import TcError

out = Console()
err = Console(stderr=True)


def _plugins() -> Any:
    from tc.plugins.manager import load_plugins

    return load_plugins()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(tc.__version__, prog_name="tc")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Fine-tune BERT encoders for token classification on cpu, cuda, deepspeed or cerebras."""
    if debug:
        os.environ["TC_DEBUG"] = "1"


# -- listings ------------------------------------------------------------------------------------
@cli.group()
def backends() -> None:
    """Hardware backends."""


@backends.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backends_list(as_json: bool) -> None:
    """Every registered backend, the plugin providing it, and whether it can run here."""
    plugins = _plugins()
    rows = []
    for name in plugins.backend_names():
        cls = plugins.registry.backends[name]
        available = cls.is_available()
        provider = plugins.registry.providers[("backends", name)]
        version = next((p.version for p in plugins.plugins if p.name == provider), "?")
        rows.append({"name": name, "aliases": list(cls.aliases), "plugin": provider, "version": version,
                     "available": available.ok, "reason": available.reason, "description": cls.description})
    cells = []
    for r in rows:
        status = "[green]yes[/]" if r["available"] else f"[red]no[/]: {escape(r['reason'])}"
        alias = f" ({', '.join(r['aliases'])})" if r["aliases"] else ""
        cells.append((r["name"] + alias, f"{r['plugin']} {r['version']}", status, r["description"]))
    _listing("backends", rows, ("name", "plugin", "available", "description"), cells, plugins, as_json)


@cli.group()
def tasks() -> None:
    """Tasks (learning problems)."""


@tasks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tasks_list(as_json: bool) -> None:
    """Every registered task and the plugin providing it."""
    plugins = _plugins()
    rows = [{"name": name, "plugin": plugins.registry.providers[("tasks", name)], "description": cls.description}
            for name, cls in plugins.registry.tasks.items()]
    cells = [(r["name"], r["plugin"], r["description"]) for r in rows]
    _listing("tasks", rows, ("name", "plugin", "description"), cells, plugins, as_json)


@cli.group()
def plugins() -> None:
    """Installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_list(as_json: bool) -> None:
    """Loaded plugins with their versions and hooks, and plugins that failed to load."""
    loaded = _plugins()
    rows = [{"name": p.name, "version": p.version, "hooks": p.hooks, "builtin": p.builtin} for p in loaded.plugins]
    cells = [(r["name"], r["version"], ", ".join(r["hooks"]), "built-in" if r["builtin"] else "[green]loaded")
             for r in rows]
    cells += [(f.name, "", f.stage, f"[red]failed: {escape(f.error)}") for f in loaded.failures]
    _listing("plugins", rows, ("name", "version", "hooks", "status"), cells, loaded, as_json, warn=False)


def _listing(kind: str, rows: list[dict[str, Any]], columns: tuple[str, ...], cells: list[tuple[str, ...]],
             plugins: Any, as_json: bool, warn: bool = True) -> None:
    """A ``tc KIND list``: ``rows`` and the load failures as JSON, or ``cells`` as a table (then the
    failures as warnings, where the table does not show them)."""
    if as_json:
        click.echo(json.dumps({kind: rows, "failures": _failures(plugins)}, indent=2))
        return
    table = Table(title=f"tc {kind}", title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in cells:
        table.add_row(*row)
    out.print(table)
    if warn:
        _warn_failures(plugins)


def _failures(plugins: Any) -> list[dict[str, str]]:
    return [{"name": f.name, "stage": f.stage, "error": f.error} for f in plugins.failures]


def _warn_failures(plugins: Any) -> None:
    """Load failures as warnings (those of ``register_commands`` were warned already, by ``main``)."""
    _warn([f for f in plugins.failures if f.stage != "register_commands"])


def _warn(failures: list[Any]) -> None:
    for f in failures:
        err.print(f"[yellow]warning:[/] plugin {escape(f.name)} failed ({f.stage}): {escape(f.error)}",
                  highlight=False, soft_wrap=True)


# -- run -----------------------------------------------------------------------------------------
def _check_launch_flags(plugins: Any, section: str, num_processes: int | None, hostfile: Path | None) -> None:
    """``--num-processes`` / ``--hostfile`` only mean something to a backend whose section has those keys."""
    for flag, key, value, what in (("--num-processes", "num_processes", num_processes, "launch processes"),
                                   ("--hostfile", "hostfile", hostfile, "take a hostfile")):
        if value is None:
            continue
        takes = sorted(n for n in plugins.backend_names()
                       if key in getattr(plugins.registry.backends[n].config_model, "model_fields", {}))
        if section not in takes:
            raise TcError(f"{flag}: the {section} backend does not {what} (backends that do: "
                          f"{', '.join(takes) or 'none'})")


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("--task", "task_name", default="token_cls", show_default=True, help="Registered task name.")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--config", "--params", "config", type=click.Path(path_type=Path), help="YAML run config.")
@click.option("--mode", default="train_and_eval", show_default=True,
              help="train, eval, train_and_eval, or a mode the backend adds (cerebras: compile_only, validate_only).")
@click.option("--model-dir", "--model_dir", "model_dir", type=click.Path(path_type=Path),
              help="Where checkpoints and results go (runconfig.model_dir).")
@click.option("--checkpoint-path", "--checkpoint_path", "checkpoint_path", type=click.Path(path_type=Path),
              help="Start from this tc / Hugging Face / other-backend checkpoint.")
@click.option("--load-checkpoint-states", "--load_checkpoint_states", "load_states",
              help="Comma list of model,optimizer,lr_scheduler,global_step,rng,dataloader or 'all'.")
@click.option("--disable-strict-checkpoint-loading", "--disable_strict_checkpoint_loading", "non_strict",
              is_flag=True, help="Load what fits; report what was skipped or freshly initialised.")
@click.option("--num-processes", "--num_processes", "num_processes", type=int,
              help="Ranks to launch (backends that launch processes, e.g. deepspeed).")
@click.option("--hostfile", type=click.Path(path_type=Path), help="Multi-node hostfile (deepspeed).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train_input.batch_size=16 (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the resolved config, data and model; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Only the final results.")
@click.option("--json", "as_json", is_flag=True, help="Print final metrics as JSON on stdout.")
def run(task_name: str, backend_name: str, config: Path | None, mode: str, model_dir: Path | None,
        checkpoint_path: Path | None, load_states: str | None, non_strict: bool, num_processes: int | None,
        hostfile: Path | None, overrides: tuple[str, ...], dry_run: bool, quiet: bool, as_json: bool) -> None:
    """Train and/or evaluate TASK on BACKEND with one shared loop."""
    from tc.core.config import Override
    from tc.core.jobs import open_job
    from tc.core.reporting import Reporter

    def flags(plugins: Any, backend_cls: Any) -> list[Override]:
        """The flags as overrides, applied after --set so they win; their values are taken verbatim (not
        parsed as YAML) and errors name them."""
        section = backend_cls.name
        _check_launch_flags(plugins, section, num_processes, hostfile)
        given = (("--model-dir", "runconfig.model_dir", model_dir),
                 ("--checkpoint-path", "runconfig.checkpoint_path", checkpoint_path),
                 ("--load-checkpoint-states", "runconfig.load_checkpoint_states", load_states),
                 ("--disable-strict-checkpoint-loading", "runconfig.disable_strict_checkpoint_loading",
                  non_strict or None),
                 ("--num-processes", f"{section}.num_processes", num_processes),
                 ("--hostfile", f"{section}.hostfile", hostfile))
        return [Override(flag, key, str(v) if isinstance(v, Path) else v, f"{flag} {v}")
                for flag, key, v in given if v is not None]

    job = open_job(task_name, backend_name, config, overrides, flags=flags, model_dir_base=True,
                   reporter=Reporter(console=err, quiet=quiet))
    backend, cfg, section = job.backend, job.cfg, job.backend.name
    if mode not in backend.modes:
        raise TcError(f"--mode {mode}: not supported by the {section} backend (supported: {', '.join(backend.modes)})")
    if as_json and (dry_run or mode not in ("eval", "train_and_eval")):
        what = "--dry-run prints a config, not metrics" if dry_run else f"--mode {mode} prints no metrics"
        raise TcError(f"--json: {what} (--json goes with --mode eval or train_and_eval)")
    if not dry_run:
        from tc.core.fs import check_model_dir

        check_model_dir(cfg)  # the model directory may not be, or contain, an input of the run
        backend.require_available()
        command = backend.relaunch_command(sys.argv[1:])
        if command is not None:  # become the launcher, so signals reach it and its ranks directly
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(command[0], command)
    if dry_run:
        from tc.core.dryrun import describe

        describe(job.task, backend, cfg, out)
        return
    from tc.core.trainer import run as run_job

    metrics = run_job(job, mode)
    if metrics is not None and as_json and backend.ranks.is_main:
        click.echo(json.dumps(metrics, default=str))
    elif metrics is not None and backend.ranks.is_main:
        task = job.task
        out.print(f"{metrics['split']} {escape(task.metric_label)} {task.selection_score(metrics):.2f}  "
                  f"(results: {cfg.runconfig.model_dir}/eval_results.json)")


@cli.group()
def prepare() -> None:
    """Convert raw data into the files a task trains from (per-task subcommands)."""


def _add_report() -> None:
    from tc.report import report

    cli.add_command(report)


_add_report()


class NonEmptyPath(click.ParamType):
    """A ``click.Path`` that refuses an empty or blank value: ``Path("")`` is ``.``, so ``--model-dir ""``
    would silently mean the working directory. Wraps the original type, which does everything else."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            from tc.core.errors import ConfigError

            flag = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name if param else "path"
            raise ConfigError(f"{flag} {value!r}: the path is empty")
        return self.inner.convert(value, param, ctx)

    def __getattr__(self, name: str) -> Any:  # metavar, completion, info dict: the wrapped type's
        return getattr(self.inner, name)


def takes_path(param: click.Parameter) -> bool:
    """A ``click.Path`` parameter, or a plain string one named like a path key (``output_path``, ``input_path``:
    options that also take ``-`` for a stream), by the same ``_dir``/``_file``/``_path`` rule configs use."""
    from tc.core.values import PATH_SUFFIXES

    return isinstance(param.type, click.Path) or (param.type is click.STRING
                                                  and (param.name or "").endswith(PATH_SUFFIXES))


def guard_paths(command: click.Command) -> None:
    """Every path option and argument of ``command`` and its subcommands (plugins' included) refuses an
    empty value; one place, so a new command cannot forget it."""
    for param in command.params:
        if takes_path(param) and not isinstance(param.type, NonEmptyPath):
            param.type = NonEmptyPath(param.type)  # type: ignore[arg-type]
    for sub in getattr(command, "commands", {}).values():
        guard_paths(sub)


def main() -> None:
    """Console entry point: plugin commands added, user errors turned into one line and an exit code."""
    from tc.core.dispatch import add_model_commands
    from tc.plugins.manager import add_commands

    try:
        loaded = _plugins()
        add_model_commands(cli, loaded.registry.tasks, guard_paths)
        clashes = add_commands(loaded.pm, cli)
        loaded.failures.extend(clashes)  # listed by tc plugins list (--json too), warned once here
        _warn(clashes)
        guard_paths(cli)
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TcError as exc:
        if os.environ.get("TC_DEBUG"):
            err.print_exception()
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
