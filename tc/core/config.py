"""The run config: YAML sections validated by pydantic, with the schema of each section owned by
whoever reads it (the task owns ``train_input``/``eval_input``, the model plugin owns ``model``, each
backend its own optional section). Paths in a YAML file resolve against that file's folder.

Layers, lowest first: the section defaults, then a ``--config`` file, or, without one, the model
directory's own ``config.yaml`` (``model_dir_base``); then ``--set`` overrides and flags, in order.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator
from pydantic_core import PydanticCustomError

from tc.core.errors import ConfigError
from tc.core.hardware import move_deprecated_keys
from tc.core.readers import DuplicateKey, parse_yaml, read_yaml, yaml_line
from tc.core.values import PATH_LIST_SUFFIXES, PATH_SUFFIXES, check_plain_value, field_types, non_finite

RELATIVE_PREFIXES = ("./", "../")
"""Values starting so are paths whatever their key (``model.pretrained: ../bert``, ``hostfile: ./hosts``)."""
MODEL_DIR_CONFIG = "config.yaml"
"""The resolved config every run writes into its model directory."""
PER_INVOCATION = ("checkpoint_path", "load_checkpoint_states", "disable_strict_checkpoint_loading")
"""runconfig keys that describe one command, not the model: a model directory's config.yaml does not pass
them on (its run's ``--checkpoint-path`` is not where the model is now)."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored; booleans are not
    numbers, floats are finite, and paths are not empty, in every section a plugin defines."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              allow_inf_nan=False)
    identity_keys: ClassVar[tuple[str, ...]] = ()
    """Keys that describe the trained model itself (architecture, labels, vocabulary): a model directory's
    config.yaml decides them, and a ``--config`` file that disagrees is an error."""
    path_keys: ClassVar[tuple[str, ...]] = ()
    """Keys holding a path that neither end in ``_dir``/``_file``/``_path`` nor are typed ``Path``."""
    name_keys: ClassVar[tuple[str, ...]] = ()
    """Keys naming something (a split, a model) for which a blank string would silently mean another thing."""

    @field_validator("*", mode="before")
    @classmethod
    def plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        field = cls.model_fields.get(name)
        if name in cls.name_keys and isinstance(value, str) and not value.strip():
            raise PydanticCustomError("empty_value", "the value is empty; leave the key out for the default")
        if field is not None:
            path_key = name.endswith(PATH_SUFFIXES + PATH_LIST_SUFFIXES) or name in cls.path_keys
            check_plain_value(value, field.annotation, path_key)
        return value


Beta = Annotated[float, Field(ge=0, lt=1)]


class OptimizerConfig(Section):
    optimizer_type: Literal["adamw", "adam", "sgd"] = "adamw"
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.9, ge=0)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lr_schedule: Literal["linear", "constant"] = "linear"
    max_gradient_norm: float | None = Field(1.0, gt=0)
    layer_decay: float = Field(1.0, gt=0, le=1)
    """Layer-wise lr decay d (ELECTRA/BEiT): the head trains at the lr, encoder layer i of L at lr * d**(L - i),
    the embeddings at lr * d**(L + 1); 1.0 is off (one lr for every parameter)."""

    def __init__(self, **data: Any) -> None:
        if isinstance(data.get("optimizer_type"), str):
            data["optimizer_type"] = data["optimizer_type"].lower()
        super().__init__(**data)


class RunSettings(Section):
    model_dir: Path = Path("model_dir")
    max_steps: int | None = Field(None, gt=0)
    num_epochs: float | None = Field(7.0, gt=0)
    """Used when max_steps is not set (a config giving both is an error)."""
    log_steps: int = Field(50, gt=0)
    eval_frequency: int | None = Field(None, gt=0)
    """Steps between devel evaluations; None evaluates at the end of each epoch."""
    checkpoint_steps: int | None = Field(None, gt=0)
    """Steps between checkpoints; None writes one at every evaluation and at the end."""
    keep_last_n: int = Field(2, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seeds Python, NumPy and torch; NumPy takes 0..2**32-1."""
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

    name_keys: ClassVar[tuple[str, ...]] = ("selection_split", "load_checkpoint_states")


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


def resolve_paths(data: Any, base: Path) -> Any:
    """Make relative paths (values of ``*_dir``, ``*_file``, ``*_path`` keys, and any value starting with
    ``./`` or ``../``) absolute against ``base``, so a config means the same from any working directory.
    Blank values stay blank, so validation can refuse them."""
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = resolve_paths(value, base)
        elif isinstance(value, list):  # a list of sections (train_input.corpora: [{data_dir: ...}])
            value = [resolve_paths(item, base) if isinstance(item, dict) else item for item in value]
        elif isinstance(value, str) and value.strip() and (str(key).endswith(PATH_SUFFIXES)
                                                           or value.startswith(RELATIVE_PREFIXES)):
            value = os.path.abspath(base / Path(value).expanduser())  # not resolve(): keep the name typed
        out[key] = value
    return out


@dataclass(frozen=True)
class Override:
    """One command-line assignment: who typed it (``--set`` or a flag such as ``--model-dir``), the
    dotted key and the value. Flags carry their value verbatim; ``--set`` values parse as YAML."""

    label: str
    key: str
    value: Any
    typed: str

    @property
    def parts(self) -> list[str]:
        return self.key.split(".")


def parse_override(assignment: str | Override) -> Override:
    """``section.key=value`` as typed after ``--set`` (value parsed as YAML, so ``16`` is an int)."""
    if isinstance(assignment, Override):
        return assignment
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or not all(p.strip() for p in key.split(".")):
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train_input.batch_size=16")
    try:
        value = parse_yaml(raw) if raw.strip() else raw  # blank stays as typed, for the message
    except DuplicateKey as exc:
        raise ConfigError(f"--set {assignment}: duplicate key {exc.key!r}; a key may appear once per mapping") from None
    except yaml.YAMLError:
        value = raw
    return Override("--set", key, value, f"--set {assignment}")


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    """``node[key] = value``, except that a mapping merges into the mapping already there, key by key."""
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = copy.deepcopy(value)


def apply_override(data: dict[str, Any], assignment: str | Override,
                   sections: dict[str, type[BaseModel]] | None = None) -> None:
    """Apply one override. A mapping value merges into its section (``--set train_input={batch_size: 8}``
    changes one key, not the whole section); a plain value for a whole section (``sections``) is an error."""
    o = parse_override(assignment)
    parts, value = o.parts, o.value
    if isinstance(value, str) and value.strip() and parts[-1].endswith(PATH_SUFFIXES):
        value = os.path.abspath(Path(value).expanduser())  # a symlink keeps its name, for messages
    elif isinstance(value, dict):
        value = resolve_paths(value, Path.cwd())
    if len(parts) == 1 and sections and parts[0] in sections and not isinstance(value, dict):
        shown = o.typed.partition(" ")[2]
        raise ConfigError(f"{o.label} {shown}: {parts[0]} is a section; set its keys, e.g. "
                          f"{o.label} {parts[0]}.{_example_key(sections[parts[0]], value)}={o.typed.partition('=')[2]}")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{o.label} {o.key}: '{part}' is not a section")
        node = child
    _merge(node, parts[-1], value)


def _example_key(section: type[BaseModel], value: Any) -> str:
    """A key of ``section`` that takes a value like ``value``, for the "set its keys" hint."""
    for name, field in section.model_fields.items():
        if type(value) in field_types(field.annotation):
            return name
    return next(iter(section.model_fields), "key")


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


def load_raw(path: Path | None, overrides: Sequence[str | Override] = ()) -> tuple[dict[str, Any], str]:
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


def pinpoint(source: str, path: Path | None, overrides: Sequence[Override], loc: Sequence[Any]) -> str:
    """Where key ``loc`` came from: the flag or ``--set`` that set it last, else ``file:line``, else ``source``."""
    dotted = ".".join(str(p) for p in loc)
    for o in reversed(overrides):
        if dotted == o.key or dotted.startswith(o.key + ".") or o.key.startswith(dotted + "."):
            return o.label
    line = None if path is None or not loc else yaml_line(path, loc)
    return source if line is None else f"{path}:{line}"


def validate(schema: type[BaseModel], data: dict[str, Any], source: str, path: Path | None = None,
             overrides: Sequence[str | Override] = ()) -> Any:
    """Validate ``data`` against ``schema``; the error names the file and line (or the ``--set`` or flag)
    and the key path."""
    sets = [parse_override(o) for o in overrides]
    unknown = [k for k in data if k not in schema.model_fields]
    if unknown:
        where = pinpoint(source, path, sets, [unknown[0]])
        raise ConfigError(f"{where}: unknown section '{unknown[0]}' (valid: {', '.join(schema.model_fields)})")
    bad = non_finite(data)
    if bad is not None:
        loc, value = bad
        raise ConfigError(f"{pinpoint(source, path, sets, loc)}: {'.'.join(loc)}: Input should be a finite number "
                          f"(got {value!r})")
    _check_consistent(data, source, path, sets)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        where = pinpoint(source, path, sets, exc.errors()[0]["loc"])
        raise ConfigError(format_validation_error(exc, where)) from None


def _check_consistent(data: dict[str, Any], source: str, path: Path | None, sets: Sequence[Override]) -> None:
    """Keys that make no sense together: two run lengths; checkpoint parts without a checkpoint."""
    rc = data.get("runconfig")
    if not isinstance(rc, dict):
        return

    def where(key: str) -> str:
        return pinpoint(source, path, sets, ["runconfig", key])

    if rc.get("max_steps") is not None and rc.get("num_epochs") is not None:
        first, other = ("num_epochs", "max_steps") if where("num_epochs").startswith("--") else ("max_steps",
                                                                                                  "num_epochs")
        raise ConfigError(f"{where(first)}: runconfig.{first}={rc[first]} and runconfig.{other}={rc[other]} "
                          f"({where(other)}) are both set; a run has one length: set runconfig.{other}=null")
    states, w = rc.get("load_checkpoint_states"), where("load_checkpoint_states")
    typed = w.startswith("--")  # a flag or --set; a file that says "all" (the default) asks for nothing
    if states is not None and (typed or states != "all") and rc.get("checkpoint_path") is None:
        what = "needs" if typed and w != "--set" else "runconfig.load_checkpoint_states needs"
        raise ConfigError(f"{w}: {what} --checkpoint-path (runconfig.checkpoint_path), the checkpoint whose parts "
                          "it picks; a resume from the model directory loads every part")


def _sections(task_cls: Any, models: dict[str, Any], backends: dict[str, Any]) -> dict[str, type[BaseModel]]:
    """Every top-level section name and its schema (the model's from the task's default model)."""
    model = models.get(task_cls.default_model)
    out: dict[str, type[BaseModel]] = {"train_input": task_cls.input_config, "eval_input": task_cls.input_config,
                                       "optimizer": OptimizerConfig, "runconfig": RunSettings}
    if model is not None:
        out["model"] = model.config_model
    out.update({n: c.config_model for n, c in backends.items() if n == c.name and c.config_model is not None})
    return out


def load_run_config(
    task_cls: Any, models: dict[str, Any], backends: dict[str, Any], path: Path | None,
    overrides: Sequence[str | Override], *, model_dir_base: bool = False,
) -> Any:
    """The validated RunConfig for ``task_cls``: the model section's schema comes from the model
    plugin named by ``model.name``, each backend's optional section from that backend.

    ``model_dir_base``: the model directory's own ``config.yaml`` (a trained model) is the base layer when
    there is no ``path``, and must agree with ``path`` on the model's identity keys when there is one."""
    sets = [parse_override(o) for o in overrides]
    sections = _sections(task_cls, models, backends)
    path = None if path is None else Path(path)
    file_data = {} if path is None else resolve_paths(read_yaml(path), path.resolve().parent)
    data = copy.deepcopy(file_data)
    for o in sets:
        apply_override(data, o, sections)
    from tc.core.model_dir_config import base_layer, check_agrees, model_dir_config

    base = model_dir_config(data) if model_dir_base else None
    where_path = path
    if base is not None and path is None:
        data, where_path = base_layer(base, sets, sections), base
        for o in sets:
            apply_override(data, o, sections)
    source = "defaults" if where_path is None else str(where_path)
    source += " + --set" if sets else ""
    move_deprecated_keys(data)  # cpu.num_threads -> runconfig.num_threads (tc.core.hardware)
    schema = _schema(task_cls, models, backends, data, source)
    cfg = validate(schema, data, source, where_path, sets)
    if base is not None and path is not None:
        check_agrees(schema, cfg, path, base, sets, sections, source)
    return cfg


def _schema(task_cls: Any, models: dict[str, Any], backends: dict[str, Any], data: dict[str, Any],
            source: str) -> type[BaseModel]:
    model_section = data.get("model") or {}
    if not isinstance(model_section, dict):
        raise ConfigError(f"{source}: model: expected a mapping")
    model_name = model_section.get("name") or task_cls.default_model
    if model_name not in models:
        raise ConfigError(f"{source}: model.name: unknown model {model_name!r} (valid: {', '.join(sorted(models))})")
    sections = {n: c.config_model for n, c in backends.items() if n == c.name and c.config_model is not None}
    return config_class(task_cls.input_config, models[model_name].config_model, sections)


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (paths as strings), for model_dir/config.yaml and --dry-run. A run with
    ``max_steps`` shows ``num_epochs: null``: one run length, the one that was used."""
    data = cfg.model_dump(mode="json")
    rc = data.get("runconfig")
    if isinstance(rc, dict) and rc.get("max_steps") is not None and "num_epochs" in rc:
        rc["num_epochs"] = None
    return yaml.safe_dump(data, sort_keys=False)
