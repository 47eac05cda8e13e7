"""The run config: YAML sections validated by pydantic, with the schema of each section owned by
whoever reads it (the task owns ``train_input``/``eval_input``, the model plugin owns ``model``, each
backend its own optional section). Paths in a YAML file resolve against that file's folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from tc.core.errors import ConfigError

PATH_SUFFIXES = ("_dir", "_file", "_path")
"""Keys ending so are filesystem paths: relative ones resolve against the YAML file's folder."""
RELATIVE_PREFIXES = ("./", "../")
"""Values starting so are paths whatever their key (``model.pretrained: ../bert``, ``hostfile: ./hosts``)."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class OptimizerConfig(Section):
    optimizer_type: Literal["adamw", "adam", "sgd"] = "adamw"
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lr_schedule: Literal["linear", "constant"] = "linear"
    max_gradient_norm: float | None = Field(1.0, gt=0)

    def __init__(self, **data: Any) -> None:
        if isinstance(data.get("optimizer_type"), str):
            data["optimizer_type"] = data["optimizer_type"].lower()
        super().__init__(**data)


class RunSettings(Section):
    model_dir: Path = Path("model_dir")
    max_steps: int | None = Field(None, gt=0)
    num_epochs: float | None = Field(7.0, gt=0)
    """Used when max_steps is not set."""
    log_steps: int = Field(50, gt=0)
    eval_frequency: int | None = Field(None, gt=0)
    """Steps between devel evaluations; None evaluates at the end of each epoch."""
    checkpoint_steps: int | None = Field(None, gt=0)
    """Steps between checkpoints; None writes one at every evaluation and at the end."""
    keep_last_n: int = Field(2, ge=1)
    seed: int = 0
    selection_split: str | None = "devel"
    """Split used to pick the best checkpoint; None keeps the last one."""
    early_stopping_patience: int | None = Field(None, gt=0)
    grad_accum_steps: int = Field(1, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    padding: Literal["dynamic", "static"] = "dynamic"
    """dynamic: length-bucketed batches padded to their longest row; static: every batch padded to
    max_sequence_length (compiled backends always use static)."""
    loss_normalization: Literal["epoch", "batch"] = "epoch"
    """epoch: each step's gradient is scaled by its loss tokens over the epoch's mean per step, so every
    token weighs the same and length bucketing does not overweight short sentences (the objective random
    batches give the Trainer); batch: each step minimises the mean over its own loss tokens."""
    num_threads: int | None = Field(None, gt=0)
    checkpoint_path: Path | None = None
    load_checkpoint_states: str = "all"
    disable_strict_checkpoint_loading: bool = False


CORE_SECTIONS = ("train_input", "eval_input", "model", "optimizer", "runconfig")


def config_class(
    input_model: type[BaseModel], model_model: type[BaseModel], backend_sections: dict[str, type[BaseModel]]
) -> type[BaseModel]:
    """The full RunConfig schema for one task/model and the registered backends' sections."""
    fields: dict[str, Any] = {
        "train_input": (input_model, Field(default_factory=input_model)),
        "eval_input": (input_model, Field(default_factory=input_model)),
        "model": (model_model, Field(default_factory=model_model)),
        "optimizer": (OptimizerConfig, Field(default_factory=OptimizerConfig)),
        "runconfig": (RunSettings, Field(default_factory=RunSettings)),
    }
    for name, model in backend_sections.items():
        fields[name] = (model, Field(default_factory=model))
    return create_model("RunConfig", __base__=Section, **fields)


RunConfig = Any  # the dynamic class above; annotated as Any for readers of plugin code


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file safely; syntax errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:  # e.g. !!python/object: safe_load builds no objects
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark else ""
        tag = re.search(r"tag '([^']*)'", exc.problem or "")
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "this tag"
        raise ConfigError(f"{path}{where}: YAML tag {shown} is not allowed; configs hold plain values only "
                          "(tc reads them with yaml.safe_load)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def resolve_paths(data: Any, base: Path) -> Any:
    """Make relative paths (values of ``*_dir``, ``*_file``, ``*_path`` keys, and any value starting with
    ``./`` or ``../``) absolute against ``base``, so a config means the same from any working directory."""
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = resolve_paths(value, base)
        elif isinstance(value, str) and value and (str(key).endswith(PATH_SUFFIXES)
                                                   or value.startswith(RELATIVE_PREFIXES)):
            p = Path(value).expanduser()
            value = str(p if p.is_absolute() else (base / p).resolve())
        out[key] = value
    return out


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set section.key=value`` (value parsed as YAML, so ``16`` is an int)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train_input.batch_size=16")
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and parts[-1].endswith(PATH_SUFFIXES) and value:
        value = str(Path(value).expanduser().resolve())
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming the source and the first bad key path."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'{more}"
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{source}: {loc}: {err['msg']}{shown}{more}"


def load_raw(path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The YAML (paths resolved against its folder) with ``--set`` overrides applied, and its source name."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        data = resolve_paths(read_yaml(path), path.resolve().parent)
        source = str(path)
    for assignment in overrides:
        apply_override(data, assignment)
    if overrides:
        source += " + --set"
    return data, source


def yaml_line(path: Path, loc: Sequence[Any]) -> int | None:
    """1-based line of key ``loc`` (or of its deepest ancestor present) in a YAML file; None if absent.

    Uses ``yaml.compose``: nodes with marks, nothing constructed."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        if match is None:
            break
        key = next(k for k, v in node.value if v is match)
        line, node = key.start_mark.line + 1, match
    return line


def pinpoint(source: str, path: Path | None, overrides: Sequence[str], loc: Sequence[Any]) -> str:
    """Where key ``loc`` came from: ``--set`` if an override set it, else ``file:line``, else ``source``."""
    dotted = ".".join(str(p) for p in loc)
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return "--set"
    line = None if path is None or not loc else yaml_line(path, loc)
    return source if line is None else f"{path}:{line}"


def validate(schema: type[BaseModel], data: dict[str, Any], source: str, path: Path | None = None,
             overrides: Sequence[str] = ()) -> Any:
    """Validate ``data`` against ``schema``; the error names the file and line (or the ``--set``) and
    the key path."""
    unknown = [k for k in data if k not in schema.model_fields]
    if unknown:
        where = pinpoint(source, path, overrides, [unknown[0]])
        raise ConfigError(f"{where}: unknown section '{unknown[0]}' (valid: {', '.join(schema.model_fields)})")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        where = pinpoint(source, path, overrides, exc.errors()[0]["loc"])
        raise ConfigError(format_validation_error(exc, where)) from None


def load_run_config(
    task_cls: Any, models: dict[str, Any], backends: dict[str, Any], path: Path | None, overrides: list[str]
) -> Any:
    """The validated RunConfig for ``task_cls``: the model section's schema comes from the model
    plugin named by ``model.name``, each backend's optional section from that backend."""
    data, source = load_raw(path, overrides)
    model_section = data.get("model") or {}
    if not isinstance(model_section, dict):
        raise ConfigError(f"{source}: model: expected a mapping")
    model_name = model_section.get("name") or task_cls.default_model
    if model_name not in models:
        raise ConfigError(f"{source}: model.name: unknown model {model_name!r} (valid: {', '.join(sorted(models))})")
    sections = {n: c.config_model for n, c in backends.items() if n == c.name and c.config_model is not None}
    schema = config_class(task_cls.input_config, models[model_name].config_model, sections)
    return validate(schema, data, source, None if path is None else Path(path), overrides)


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (paths as strings), for model_dir/config.yaml and --dry-run."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
