"""Config and command-line hardening (#18): every value a user can type is used as meant or refused.

Each ``CASES`` row runs the real ``tc`` console script on one bad input (an empty path, a boolean for a
number, a duplicate YAML key, a flag for the wrong backend, a data file that is a directory...) and
asserts the exact ``error:`` line, the exit code and that no traceback escapes. ``docs/errors.md`` holds
the same rows (``DOCUMENTED``, checked by ``tests/test_errors.py``). Further tests show that a trained
model directory's own ``config.yaml`` decides its model for eval and resume, and that a ``--set`` of a
whole mapping merges into its section.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_tc
from test_errors import SMALL, Env, error_line, write
from test_errors import trained as trained

from tc.core.readers import yaml_line


def tiny(*args: str) -> Callable[[Env], list[str]]:
    """``tc run`` on the tiny config into a fresh ``DIR/model``, plus ``args``."""
    return lambda e: ["run", "--config", str(TINY), "--model-dir", str(e.tmp / "model"), *SMALL, *args]


def config_file(text: str, *args: str) -> Callable[[Env], list[str]]:
    """``tc run --config DIR/run.yaml`` (``text``) into a fresh ``DIR/model``, nothing else."""
    return lambda e: ["run", "--config", str(write(e.tmp / "run.yaml", text)), "--model-dir", str(e.tmp / "model"),
                      *args]


def data_dir_with(make: Callable[[Path], object]) -> Callable[[Env], list[str]]:
    """The tiny run with ``train_input.data_dir=DIR/d``, where ``make(DIR/d)`` builds the bad entry."""

    def args(e: Env) -> list[str]:
        folder = e.tmp / "d"
        folder.mkdir()
        make(folder)
        return tiny("--set", f"train_input.data_dir={folder}")(e)

    return args


def label_map(text: str) -> Callable[[Env], list[str]]:
    return lambda e: tiny("--set", f"train_input.label_vocab_file={write(e.tmp / 'label2id.json', text)}")(e)


@dataclass(frozen=True)
class Cmd:
    """A bad input: the full ``tc`` argv, the exact message (or its start), extra environment."""

    argv: Callable[[Env], list[str]]
    message: Callable[[Env], str]
    exact: bool = True
    needs_training: bool = False
    env: dict[str, str] = field(default_factory=dict)


def disagreeing_line(env: Env) -> str:
    line = yaml_line(env.trained / "config.yaml", ["model", "hidden_size"], exact=True)
    return (f"{env.tmp / 'run.yaml'}:4: model.hidden_size is 128 but the model directory's "
            f"{env.trained / 'config.yaml'}:{line} has null; the trained model decides it (leave out --config to "
            "use the model's own, or use another --model-dir)")


ARCH_128 = "model:\n  preset: tiny\n  pretrained: null\n  hidden_size: 128\n"
CASES: dict[str, Cmd] = {
    # empty paths: flags and keys
    "empty-model-dir": Cmd(tiny("--model-dir", ""), lambda e: "--model-dir '': the path is empty"),
    "empty-config": Cmd(tiny("--config", " "), lambda e: "--config ' ': the path is empty"),
    "empty-checkpoint-path": Cmd(tiny("--checkpoint-path", ""), lambda e: "--checkpoint-path '': the path is empty"),
    "empty-path-other-command": Cmd(lambda e: ["predict", "--model-dir", " "],
                                    lambda e: "--model-dir ' ': the path is empty"),
    "empty-path-argument": Cmd(lambda e: ["export", "--model-dir", str(e.tmp), ""],
                               lambda e: "OUT '': the path is empty"),
    "empty-path-key": Cmd(config_file("train_input:\n  data_dir: ''\n"),
                          lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.data_dir: the path is empty (got '')"),
    "empty-path-set": Cmd(tiny("--set", "train_input.vocab_file= "),
                          lambda e: "--set: train_input.vocab_file: the path is empty (got ' ')"),
    # values that crashed deep inside torch / numpy
    "optimizer-beta-out-of-range": Cmd(tiny("--set", "optimizer.betas=[0.9, 1.0]"),
                                       lambda e: "--set: optimizer.betas.1: Input should be less than 1 (got 1.0)"),
    "optimizer-eps-not-positive": Cmd(config_file("optimizer:\n  eps: 0\n"),
                                      lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.eps: Input should be greater "
                                                "than 0 (got 0)"),
    "seed-negative": Cmd(tiny("--set", "runconfig.seed=-1"),
                         lambda e: "--set: runconfig.seed: Input should be greater than or equal to 0 (got -1)"),
    "seed-too-large": Cmd(tiny("--set", "runconfig.seed=4294967296"),
                          lambda e: "--set: runconfig.seed: Input should be less than or equal to 4294967295 "
                                    "(got 4294967296)"),
    "report-output-not-image": Cmd(lambda e: ["report", str(e.trained), "-o", str(e.tmp / "r.txt")],
                                   lambda e: f"--output {e.tmp / 'r.txt'}: '.txt' is not an image format (use .png, "
                                             ".svg or .pdf; valid: ",
                                   exact=False, needs_training=True),
    # silently wrong before
    "yaml-duplicate-key": Cmd(config_file("train_input:\n  batch_size: 4\ntrain_input:\n  max_sentences: 8\n"),
                              lambda e: f"{e.tmp / 'run.yaml'}:3: duplicate key 'train_input' (first at line 1); a "
                                        "key may appear once per mapping"),
    "yaml-duplicate-nested-key": Cmd(config_file("train_input:\n  batch_size: 4\n  batch_size: 8\n"),
                                     lambda e: f"{e.tmp / 'run.yaml'}:3: duplicate key 'batch_size' (first at line 2);"
                                               " a key may appear once per mapping"),
    "set-duplicate-key": Cmd(tiny("--set", "train_input={batch_size: 4, batch_size: 8}"),
                             lambda e: "--set train_input={batch_size: 4, batch_size: 8}: duplicate key 'batch_size'; "
                                       "a key may appear once per mapping"),
    "config-bool-as-number": Cmd(config_file("train_input:\n  batch_size: true\n"),
                                 lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be an "
                                           "integer, not a boolean (got True)"),
    "config-bool-in-backend-section": Cmd(tiny("--set", "cuda.device=false"),
                                          lambda e: "--set: cuda.device: Input should be an integer, not a boolean "
                                                    "(got False)"),
    "config-non-finite": Cmd(config_file("optimizer:\n  learning_rate: .inf\n"),
                             lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.learning_rate: Input should be a finite "
                                       "number (got inf)"),
    "config-non-finite-free-form": Cmd(tiny("--set", "deepspeed.config={loss_scale: .nan}"),
                                       lambda e: "--set: deepspeed.config.loss_scale: Input should be a finite number "
                                                 "(got nan)"),
    "run-length-twice": Cmd(config_file("runconfig:\n  max_steps: 5\n  num_epochs: 2\n"),
                            lambda e: f"{e.tmp / 'run.yaml'}:2: runconfig.max_steps=5 and runconfig.num_epochs=2 "
                                      f"({e.tmp / 'run.yaml'}:3) are both set; a run has one length: set "
                                      "runconfig.num_epochs=null"),
    "run-length-twice-set": Cmd(config_file("runconfig:\n  max_steps: 5\n", "--set", "runconfig.num_epochs=3"),
                                lambda e: f"--set: runconfig.num_epochs=3 and runconfig.max_steps=5 "
                                          f"({e.tmp / 'run.yaml'}:2) are both set; a run has one length: set "
                                          "runconfig.max_steps=null"),
    "load-states-without-checkpoint": Cmd(tiny("--load-checkpoint-states", "model"),
                                          lambda e: "--load-checkpoint-states: needs --checkpoint-path "
                                                    "(runconfig.checkpoint_path), the checkpoint whose parts it picks; "
                                                    "a resume from the model directory loads every part"),
    "plugins-unknown": Cmd(lambda e: ["plugins", "list"],
                           lambda e: "TC_LOAD_PLUGINS=nosuch: no installed plugin named 'nosuch' (installed: ",
                           exact=False, env={"TC_LOAD_PLUGINS": "nosuch"}),
    "json-without-metrics": Cmd(tiny("--mode", "train", "--json"),
                                lambda e: "--json: --mode train prints no metrics (--json goes with --mode eval or "
                                          "train_and_eval)"),
    # misleading before
    "num-processes-wrong-backend": Cmd(tiny("--num-processes", "2"),
                                       lambda e: "--num-processes: the cpu backend does not launch processes "
                                                 "(backends that do: deepspeed)"),
    "hostfile-wrong-backend": Cmd(tiny("--hostfile", "hosts.txt"),
                                  lambda e: "--hostfile: the cpu backend does not take a hostfile (backends that do: "
                                            "deepspeed)"),
    "set-whole-section": Cmd(tiny("--set", "runconfig=5"),
                             lambda e: "--set runconfig=5: runconfig is a section; set its keys, e.g. --set "
                                       "runconfig.max_steps=5"),
    "data-file-is-directory": Cmd(data_dir_with(lambda d: (d / "train.tsv").mkdir()),
                                  lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a directory, expected a data file"),
    "data-file-broken-symlink": Cmd(data_dir_with(lambda d: (d / "train.tsv").symlink_to(d.parent / "gone.tsv")),
                                    lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a broken symlink: its target "
                                              f"{e.tmp / 'gone.tsv'} does not exist"),
    "data-file-symlink-loop": Cmd(data_dir_with(lambda d: (d / "train.tsv").symlink_to(d / "train.tsv")),
                                  lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a symlink loop (it never reaches a "
                                            "file)"),
    "label-map-duplicate-key": Cmd(label_map('{\n  "O": 0,\n  "B-Chemical": 1,\n  "B-Chemical": 2\n}\n'),
                                   lambda e: f"{e.tmp / 'label2id.json'}:4: duplicate key 'B-Chemical' (first at line "
                                             "3); a key may appear once per mapping"),
    "model-dir-config-conflict": Cmd(lambda e: ["run", "--config", str(write(e.tmp / "run.yaml", ARCH_128)),
                                                "--model-dir", str(e.trained), "--mode", "eval"],
                                     disagreeing_line, needs_training=True),
}
DOCUMENTED = set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_line(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case = CASES[name]
    env = Env(tmp_path, request.getfixturevalue("trained") if case.needs_training else tmp_path / "untrained")
    proc = run_tc(*case.argv(env), env=case.env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    message, expected = error_line(proc), case.message(env)
    assert message == expected if case.exact else message.startswith(expected), (message, expected)
    assert not (tmp_path / "model" / "checkpoint_2.pt").exists()


def test_empty_model_dir_writes_nothing_into_the_working_directory(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), *SMALL, "--model-dir", "", cwd=tmp_path)
    assert proc.returncode == 2 and list(tmp_path.iterdir()) == []


# -- the model directory knows its model ---------------------------------------------------------
def test_eval_without_config_builds_the_trained_model(trained: Path, tmp_path: Path) -> None:
    """The README's ``tc run --model-dir M --mode eval`` on a model trained with the tiny config: the
    model directory's config.yaml is the base (tiny BERT, its data), ``--set`` still applies."""
    model_dir = tmp_path / "M"
    subprocess.run(["cp", "-a", str(trained), str(model_dir)], check=True)
    proc = run_tc("run", "--model-dir", str(model_dir), "--mode", "eval", "--json", "--set",
                  "eval_input.max_sentences=5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["split"] == "test" and metrics["sentences"] == 5
    dry = run_tc("run", "--model-dir", str(model_dir), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    shown = yaml.safe_load(dry.stdout[: dry.stdout.index("dry run")].rsplit("\n", 1)[0])
    assert shown["model"]["preset"] == "tiny" and shown["model"]["pretrained"] is None
    assert shown["runconfig"]["model_dir"] == str(model_dir)
    assert shown["runconfig"]["checkpoint_path"] is None


def test_resume_without_config_continues_the_trained_model(trained: Path, tmp_path: Path) -> None:
    """A run length typed on the command line replaces the trained one; the tiny run resumes 2 -> 3."""
    model_dir = tmp_path / "M"
    subprocess.run(["cp", "-a", str(trained), str(model_dir)], check=True)
    proc = run_tc("run", "--model-dir", str(model_dir), "--mode", "train", "--set", "runconfig.max_steps=3",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stderr and (model_dir / "checkpoint_3.pt").exists()
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert saved["model"]["preset"] == "tiny" and saved["runconfig"]["max_steps"] == 3
    assert saved["runconfig"]["num_epochs"] is None  # one run length in the resolved config, the one used


def test_a_set_that_disagrees_with_the_model_dir_is_an_explicit_override(trained: Path, tmp_path: Path) -> None:
    """Only a ``--config`` file is checked against the trained config; a ``--set`` wins, and what it breaks
    is reported where it breaks (here: the checkpoint no longer fits)."""
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(trained), "--mode", "eval",
                  "--set", "model.hidden_size=128", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_line(proc).startswith(f"{trained / 'checkpoint_2.pt'}: shape mismatch")


# -- --set of a mapping merges -------------------------------------------------------------------
def test_set_of_a_mapping_merges_into_its_section(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--dry-run", "--set", "train_input={batch_size: 8}", cwd=tmp_path,
                  env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout[: proc.stdout.index("dry run")].rsplit("\n", 1)[0])
    assert shown["train_input"]["batch_size"] == 8
    assert shown["train_input"]["max_sentences"] == 800 and shown["train_input"]["max_sequence_length"] == 64


def test_data_dir_that_is_a_broken_symlink_says_so(tmp_path: Path) -> None:
    link = tmp_path / "d"
    link.symlink_to(tmp_path / "nowhere")
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "model"), *SMALL,
                  "--set", f"train_input.data_dir={link}", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_line(proc) == f"{link}: is a broken symlink: its target {tmp_path / 'nowhere'} does not exist"


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    """``<<:`` merges are YAML's own way to repeat keys on purpose: not duplicates."""
    from tc.core.readers import read_yaml

    cfg = write(tmp_path / "c.yaml", "base: &b\n  batch_size: 4\n  shuffle: true\ntrain_input:\n  <<: *b\n"
                                     "  batch_size: 8\n")
    assert read_yaml(cfg)["train_input"] == {"batch_size": 8, "shuffle": True}


def test_label_map_ids_must_be_integers_not_booleans(tmp_path: Path) -> None:
    from tc.core.errors import DataError
    from tc.tasks.token_cls.labels import LabelMap

    path = write(tmp_path / "label2id.json", '{"O": false, "B-X": true}')
    with pytest.raises(DataError, match="expected a JSON object"):
        LabelMap.load(path)
