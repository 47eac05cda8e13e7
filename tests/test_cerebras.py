"""The cerebras backend against the real cerebras.pytorch 2.10 (cstorch), on cstorch's CPU backend.

cstorch pins torch 2.4, so it lives in its own venv (``bash .ci/cerebras_env.sh`` prints its python;
export that as TC_CEREBRAS_PYTHON). The end-to-end tests run the real ``tc`` CLI with that python, then
read what it wrote from this main environment, which has no cstorch and a newer torch: the checkpoint
cstorch wrote must give the cpu backend the very same predictions. The tests at the bottom check the
pure pieces (state conversion, how training is cut into DataExecutors) here, without cstorch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from helpers import TINY, Rows, read_jsonl, run_tc, weights

from tc.backends.cerebras import (
    CerebrasBackend,
    optimizer_from_torch,
    optimizer_to_torch,
    schedule_state,
)
from tc.core.interfaces import OptimSpec
from tc.core.sampling import BatchPlan

CEREBRAS_PYTHON = os.environ.get("TC_CEREBRAS_PYTHON", "")
needs_cstorch = pytest.mark.skipif(
    not CEREBRAS_PYTHON, reason="TC_CEREBRAS_PYTHON is not set: create the cerebras.pytorch venv with "
    "`bash .ci/cerebras_env.sh` and export the python path it prints last",
)
CPU = ["--set", "cerebras.backend_type=CPU"]
THREADS = {"OMP_NUM_THREADS": "2", "COLUMNS": "200"}

PREDICT = """
import json, sys
from pathlib import Path
from tc.core.evaluation import predict_rows
from tc.core.jobs import open_job
from tc.core.trainer import runner_for_eval

backend_name, checkpoint, model_dir, out, *sets = sys.argv[1:]
job = open_job("token_cls", backend_name, Path(TINY_CONFIG),
               [f"runconfig.model_dir={model_dir}", f"runconfig.checkpoint_path={checkpoint}", *sets])
task, backend, cfg = job.task, job.backend, job.cfg
backend.setup()
runner = runner_for_eval(job)
pad_to = cfg.eval_input.max_sequence_length if backend.static_shapes else None
rows = predict_rows(runner, backend, task.dataset("test"), cfg.eval_input.batch_size, pad_to)
backend.teardown()
Path(out).write_text(json.dumps({str(k): v.tolist() for k, v in sorted(rows.items())}))
""".replace("TINY_CONFIG", repr(str(TINY)))

SCHEDULE = """
import json, sys, tempfile
import torch
import cerebras.pytorch as cstorch
from tc.backends.cerebras import build_scheduler
from tc.core.interfaces import OptimSpec

cstorch.backend("CPU", artifact_dir=tempfile.mkdtemp())
model = torch.nn.Linear(2, 2)
results = []
for warmup, total, kind, start in json.loads(sys.argv[1]):
    spec = OptimSpec("adamw", 1e-3, 0.0, (0.9, 0.999), 1e-8, 0.0, warmup, total, kind, None)
    opt = cstorch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = build_scheduler(spec, opt, start)
    used = []
    for _ in range(start, total + 2):
        used.append(float(opt.param_groups[0]["lr"]))  # the lr the next optimizer step uses
        opt.step()
        sched.step()
    results.append(used)
print(json.dumps(results))
"""
SCHEDULES = [(3, 10, "linear", 0), (3, 10, "linear", 2), (3, 10, "linear", 6), (1, 5, "linear", 0),
             (0, 6, "linear", 0), (4, 9, "constant", 1)]
"""(warmup, total, schedule, first step): fresh runs and resumes inside and after the warmup."""


def cerebras_tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``tc ARGS`` run by the cerebras venv's python (its tc is this checkout, installed editable)."""
    proc = subprocess.run([CEREBRAS_PYTHON, "-m", "tc.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **THREADS}, cwd=Path.cwd(), timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"tc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def predictions(python: str, backend: str, checkpoint: Path, model_dir: Path, out: Path, *sets: str) -> dict:
    subprocess.run([python, "-c", PREDICT, backend, str(checkpoint), str(model_dir), str(out), *sets],
                   check=True, capture_output=True, text=True, env={**os.environ, **THREADS}, cwd=Path.cwd(),
                   timeout=900)
    return json.loads(out.read_text())


def copy_assets(source: Path, target: Path, *names: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "label2id.json", "tc_task.json", *names):
        shutil.copy(source / name, target / name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config trained and evaluated by the real CLI on cstorch's CPU backend (150 steps)."""
    model_dir = tmp_path_factory.mktemp("cerebras") / "run"
    cerebras_tc("run", "--task", "token_cls", "--backend", "cerebras", "--mode", "train_and_eval",
                "--config", str(TINY), *CPU, "--model-dir", str(model_dir))
    return model_dir


# -- end to end, with cstorch -----------------------------------------------------------------------
@pytest.mark.cerebras
@needs_cstorch
def test_cli_trains_and_evaluates_through_cstorch(trained: Path) -> None:
    losses = [e["loss"] for e in read_jsonl(trained / "metrics.jsonl") if "loss" in e]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses
    results = json.loads((trained / "eval_results.json").read_text())
    assert results["split"] == "test"
    assert isinstance(results["f1"], float) and 0.0 <= results["f1"] <= 100.0
    # the weights went through cstorch.save (HDF5) and a tc file was written beside them
    assert (trained / "checkpoint_150.mdl").read_bytes()[:4] == b"\x89HDF"
    assert (trained / "checkpoint_150.pt").is_file()
    assert not (trained / "checkpoint_50.mdl").exists(), "pruned .pt must take its .mdl along"
    assert (trained / "cerebras_logs" / "executors").is_dir()


@pytest.mark.cerebras
@needs_cstorch
def test_cstorch_checkpoint_predicts_the_same_in_the_main_environment(trained: Path, tmp_path: Path) -> None:
    on_cerebras = predictions(CEREBRAS_PYTHON, "cerebras", trained / "checkpoint_150.mdl", trained,
                              tmp_path / "cerebras.json", "cerebras.backend_type=CPU",
                              f"cerebras.artifact_dir={tmp_path / 'logs'}")
    on_cpu = predictions(sys.executable, "cpu", trained / "checkpoint_150.pt", trained, tmp_path / "cpu.json")
    assert on_cpu.keys() == on_cerebras.keys()
    differing = [row for row in on_cpu if on_cpu[row] != on_cerebras[row]]
    assert not differing, f"{len(differing)} of {len(on_cpu)} rows predicted differently"
    outside = json.loads((trained / "label2id.json").read_text())["O"]
    assert any(label != outside for row in on_cpu.values() for label in row), "a model that only says O"

    # the user's path: `tc run --backend cpu --mode eval` on the best weights reproduces the cerebras scores
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--mode", "eval", "--config", str(TINY),
           "--checkpoint-path", str(trained / "best_model.pt"), "--model-dir", str(tmp_path / "cpu_eval"),
           env=THREADS, check=True)
    ours = json.loads((tmp_path / "cpu_eval" / "eval_results.json").read_text())
    theirs = json.loads((trained / "eval_results.json").read_text())
    for key in ("f1", "precision", "recall", "token_macro_f1"):
        assert ours[key] == theirs[key], key


@pytest.mark.cerebras
@needs_cstorch
def test_crf_head_evaluates_on_cstorch_as_on_cpu(tmp_path: Path) -> None:
    """The CRF's Viterbi runs on the host after the traced eval step, whose batches are padded to a static
    row count: 50 test sentences make a last batch of 22 real rows padded to 32 (it failed on that before)."""
    model_dir = tmp_path / "crf"
    short = ["--set", "runconfig.max_steps=6", "--set", "train_input.max_sentences=64",
             "--set", "eval_input.max_sentences=50", "--set", "model.head=crf"]
    on_cerebras = cerebras_tc("run", "--backend", "cerebras", "--config", str(TINY), *CPU, *short,
                              "--model-dir", str(model_dir), "--json")
    on_cpu = run_tc("run", "--backend", "cpu", "--mode", "eval", "--model-dir", str(model_dir), "--config",
                    str(TINY), *short, "--set", "runconfig.num_threads=1", "--json", check=True)
    ours, theirs = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (on_cerebras, on_cpu))
    assert ours["sentences"] == theirs["sentences"] == 50
    assert ours["f1"] == pytest.approx(theirs["f1"], abs=0.01) and ours["token_macro_f1"] == pytest.approx(
        theirs["token_macro_f1"], abs=0.01)


@pytest.mark.cerebras
@needs_cstorch
def test_resume_from_cstorch_checkpoint_is_exact_and_cpu_backend_resumes_it(tmp_path: Path) -> None:
    short = ["run", "--task", "token_cls", "--backend", "cerebras", "--mode", "train", "--config", str(TINY),
             *CPU, "--set", "runconfig.max_steps=4", "--set", "runconfig.checkpoint_steps=2",
             "--set", "runconfig.selection_split=null", "--set", "runconfig.keep_last_n=5"]
    whole, resumed, cpu = tmp_path / "whole", tmp_path / "resumed", tmp_path / "cpu"
    cerebras_tc(*short, "--model-dir", str(whole))
    copy_assets(whole, resumed)
    cerebras_tc(*short, "--model-dir", str(resumed), "--checkpoint-path", str(whole / "checkpoint_2.mdl"))
    a = torch.load(whole / "checkpoint_4.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint_4.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for idx, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][idx][k]) for k, v in state.items())

    # another backend resumes the whole state (optimizer, schedule, data position) from the .pt
    copy_assets(whole, cpu, "checkpoint_2.pt")
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--mode", "train", "--config", str(TINY),
           "--set", "runconfig.max_steps=4", "--set", "runconfig.selection_split=null",
           "--set", "runconfig.padding=static", "--model-dir", str(cpu), env=THREADS, check=True)
    c = torch.load(cpu / "checkpoint_4.pt", weights_only=True)
    assert c["global_step"] == 4 and float(c["optimizer"]["state"][0]["step"]) == 4.0
    drift = max(float((a["model"][k] - c["model"][k]).abs().max()) for k in a["model"])
    assert drift < 0.05, drift


@pytest.mark.cerebras
@needs_cstorch
def test_traced_step_scales_the_gradient_by_the_step_weight(tmp_path: Path) -> None:
    """Epoch loss normalisation reaches the traced step: one plain-SGD step on cstorch moves the weights
    as the cpu backend's does, and differently from the unweighted step (batch 1: both backends build
    the same plan, so the first step's weight is that row's loss tokens over the mean per row)."""
    one_step = ["run", "--task", "token_cls", "--mode", "train", "--config", str(TINY),
                "--set", "runconfig.max_steps=1", "--set", "runconfig.selection_split=null",
                "--set", "train_input.batch_size=1", "--set", "optimizer.optimizer_type=sgd",
                "--set", "optimizer.momentum=0", "--set", "optimizer.weight_decay=0",
                "--set", "optimizer.warmup_ratio=0", "--set", "optimizer.max_gradient_norm=null",
                "--set", "optimizer.learning_rate=1.0", "--set", "model.dropout_rate=0",
                "--set", "model.attention_dropout_rate=0", "--set", "model.encoder_output_dropout_rate=0"]
    epoch = ["--set", "runconfig.loss_normalization=epoch"]
    cerebras_tc(*one_step, "--backend", "cerebras", *CPU, *epoch, "--model-dir", str(tmp_path / "cs"))
    cpu = [*one_step, "--backend", "cpu", "--set", "runconfig.padding=static"]
    run_tc(*cpu, *epoch, "--model-dir", str(tmp_path / "cpu"), env=THREADS, check=True)
    run_tc(*cpu, "--set", "runconfig.loss_normalization=batch", "--model-dir", str(tmp_path / "plain"),
           env=THREADS, check=True)
    run_tc(*cpu, "--set", "optimizer.learning_rate=1e-30", "--model-dir", str(tmp_path / "init"),
           env=THREADS, check=True)

    start = weights(tmp_path / "init" / "checkpoint_1.pt")
    move = {name: torch.cat([(v - start[k]).flatten()
                             for k, v in weights(tmp_path / name / "checkpoint_1.pt").items()])
            for name in ("cs", "cpu", "plain")}

    def gap(a: str, b: str) -> float:
        return float((move[a] - move[b]).norm() / move[b].norm())

    assert gap("cpu", "plain") > 0.05, "the first step's weight is ~1: the check would not see a missing weight"
    assert gap("cs", "cpu") < 1e-3


@pytest.mark.cerebras
@needs_cstorch
@pytest.mark.parametrize("mode", ["compile_only", "validate_only"])
def test_compile_modes_report_cstorchs_refusal_on_its_cpu_backend(mode: str, tmp_path: Path) -> None:
    proc = cerebras_tc("run", "--task", "token_cls", "--backend", "cerebras", "--mode", mode, "--config",
                       str(TINY), *CPU, "--model-dir", str(tmp_path), check=False)
    assert proc.returncode == 2, (
        f"exit {proc.returncode}, stderr {proc.stderr!r} (exit 0 and no output: tc.core.trainer.run does not "
        f"hand --mode {mode} to the backend's run_mode)"
    )
    assert f"CpuBackendImpl.__init__() got an unexpected keyword argument '{mode}'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.cerebras
@needs_cstorch
def test_cstorch_schedule_equals_optimspec_also_when_resumed() -> None:
    proc = subprocess.run([CEREBRAS_PYTHON, "-c", SCHEDULE, json.dumps(SCHEDULES)], check=True,
                          capture_output=True, text=True, env={**os.environ, **THREADS}, timeout=300)
    for (warmup, total, kind, start), used in zip(SCHEDULES, json.loads(proc.stdout.splitlines()[-1]), strict=True):
        spec = OptimSpec("adamw", 1e-3, 0.0, (0.9, 0.999), 1e-8, 0.0, warmup, total, kind, None)
        expected = [1e-3 * spec.lr_factor(step) for step in range(start, total + 2)]
        assert np.allclose(used, expected, rtol=1e-5, atol=1e-9), (warmup, total, kind, start, used)


# -- without cstorch ----------------------------------------------------------------------------------
@pytest.mark.cli
@pytest.mark.skipif(importlib.util.find_spec("cerebras") is not None, reason="cerebras is installed here")
def test_unavailable_without_cstorch_names_the_install() -> None:
    available = CerebrasBackend.is_available()
    assert not available.ok
    assert "cerebras.pytorch not installed" in available.reason and "tc[cerebras]" in available.reason
    proc = run_tc("run", "--task", "token_cls", "--backend", "cerebras-appliance", "--config", str(TINY))
    assert proc.returncode != 0 and "cerebras.pytorch not installed" in proc.stderr


def test_optimizer_state_converts_both_ways_with_torch() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    groups = [{"params": [model.weight], "weight_decay": 0.1}, {"params": [model.bias], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=0.01, betas=(0.8, 0.9))
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
    saved = opt.state_dict()
    live = {"state": {}, "param_groups": [
        {"lr": 0.0, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0, "l2_regularization_rate": 0.0,
         "correct_bias": True, "amsgrad": False, "params": [i]} for i in (0, 1)]}
    native = optimizer_from_torch(saved, live, "adamw")
    assert [g["weight_decay"] for g in native["param_groups"]] == [0.1, 0.0]
    assert native["param_groups"][0]["betas"] == (0.8, 0.9) and native["param_groups"][0]["correct_bias"]
    assert float(native["state"][0]["beta1_power"]) == pytest.approx(0.8**4)  # cstorch: beta^(t+1)
    assert "step" not in native["state"][0]

    back = optimizer_to_torch(native, "adamw", steps=3)
    fresh = torch.optim.AdamW([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.5)
    fresh.load_state_dict(back)
    assert fresh.param_groups[0]["lr"] == 0.01 and fresh.param_groups[0]["weight_decay"] == 0.1
    for idx in (0, 1):
        assert torch.equal(fresh.state_dict()["state"][idx]["exp_avg"], saved["state"][idx]["exp_avg"])
        assert float(fresh.state_dict()["state"][idx]["step"]) == 3.0
    # powers saved beside a step they no longer match (another backend stepped on) are recomputed
    back["state"][0]["step"] = torch.tensor(7.0)
    again = optimizer_from_torch(back, live, "adamw")
    assert float(again["state"][0]["beta1_power"]) == pytest.approx(0.8**8)


def test_adam_weight_decay_becomes_cstorch_l2_rate() -> None:
    model = torch.nn.Linear(2, 2)
    saved = torch.optim.Adam([{"params": [model.weight], "weight_decay": 0.2}], lr=0.1).state_dict()
    live = {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0,
                                           "l2_regularization_rate": 0.0, "correct_bias": True,
                                           "amsgrad": False, "params": [0]}]}
    native = optimizer_from_torch(saved, live, "adam")
    assert native["param_groups"][0]["l2_regularization_rate"] == 0.2
    assert native["param_groups"][0]["weight_decay"] == 0.0
    assert optimizer_to_torch(native, "adam", 0)["param_groups"][0]["weight_decay"] == 0.2


def test_schedule_state_is_what_lambdalr_loads() -> None:
    spec = OptimSpec("adamw", 0.01, 0.0, (0.9, 0.999), 1e-8, 0.0, 2, 10, "linear", None)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, spec.lr_factor)
    sched.load_state_dict(schedule_state(spec, 5, 1))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * spec.lr_factor(6))


def backend_with(**runconfig: Any) -> CerebrasBackend:
    settings = {"checkpoint_steps": None, "eval_frequency": None, "selection_split": "devel", **runconfig}
    return CerebrasBackend(SimpleNamespace(runconfig=SimpleNamespace(**settings)))


@pytest.mark.parametrize(("runconfig", "start", "steps", "ends"), [
    ({"eval_frequency": 5, "checkpoint_steps": 3}, 0, 12, [3, 5, 6, 9, 10, 12]),
    ({}, 0, 12, [5, 10, 12]),  # no eval_frequency: evaluations at epoch ends (5 steps per epoch)
    ({"selection_split": None}, 0, 12, [12]),
    ({"eval_frequency": 4}, 6, 5, [8, 11]),  # resumed at step 6
])
def test_training_runs_one_executor_between_evaluations_and_checkpoints(
    runconfig: dict[str, Any], start: int, steps: int, ends: list[int]
) -> None:
    plan = BatchPlan(Rows(20, length=1), 4, train=True, seed=3, drop_last=True, bucket=False,
                     start_epoch=start // 5, start_position=start % 5, max_steps=steps)
    parts = backend_with(**runconfig).segments(plan)
    assert [p.start_epoch * 5 + p.start_position + p.max_steps for p in parts] == ends
    whole = [s.rows.tolist() for s in plan]
    assert [s.rows.tolist() for p in parts for s in p] == whole
