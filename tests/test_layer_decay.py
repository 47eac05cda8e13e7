"""Layer-wise learning-rate decay (``optimizer.layer_decay``, ``tc.core.layer_decay``), a recipe lever of
issue #21 whose default (1.0) is the old optimizer exactly: the parameter groups on a real tiny BERT, real
optimizer steps of the cpu runner, a real ``tc run`` that resumes bit-identically, DeepSpeed ZeRO-2 ranks,
cstorch's schedules (with the cerebras venv), and the one-line refusals (``docs/errors.md``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    ONE_THREAD,
    SMALL,
    TINY,
    Case,
    case_test,
    padded_batch,
    read_jsonl,
    run_tc,
    tiny_bert,
    tiny_run,
)

from tc.backends.eager import EagerRunner
from tc.core.errors import ConfigError
from tc.core.interfaces import OptimSpec

NO_DROPOUT = {"dropout_rate": 0.0, "attention_dropout_rate": 0.0, "encoder_output_dropout_rate": 0.0}
CEREBRAS_PYTHON = os.environ.get("TC_CEREBRAS_PYTHON", "")


def spec(decay: float = 1.0, kind: str = "sgd", weight_decay: float = 0.0) -> OptimSpec:
    return OptimSpec(kind, 0.1, weight_decay, (0.9, 0.999), 1e-8, 0.0, warmup_steps=0, total_steps=10,
                     schedule="constant", max_gradient_norm=None, layer_decay=decay)


def depth_scale(name: str, decay: float) -> float:
    """What the recipe says: head 1, encoder layer i decay**(L - i), embeddings decay**(L + 1)."""
    layers = 2  # the tiny preset
    if name.startswith("embeddings."):
        return decay ** (layers + 1)
    if name.startswith("encoder.layers."):
        return decay ** (layers - int(name.split(".")[2]))
    return 1.0


def test_layer_decay_groups_follow_the_depth_of_every_parameter() -> None:
    model = tiny_bert()
    groups = spec(0.5, weight_decay=0.01).param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    for g in groups:
        for p in g["params"]:
            assert g["lr_scale"] == depth_scale(names[id(p)], 0.5), names[id(p)]
            assert g["weight_decay"] == (0.0 if p.ndim < 2 or names[id(p)].endswith("norm.weight") else 0.01)
    assert [names[id(p)] for p in groups[0]["params"]] == ["classifier.weight"]
    assert {names[id(p)] for p in groups[-2]["params"]} == {f"embeddings.{k}.weight" for k in
                                                           ("word", "position", "token_type")}


def test_layer_decay_scales_each_parameters_step_on_the_cpu_runner() -> None:
    """Plain SGD, same init, same batch: with decay d every parameter moves d**depth as far as with 1.0,
    and the optimizer's groups carry exactly lr * d**depth."""
    moves = {}
    for decay in (1.0, 0.5):
        model = tiny_bert(**NO_DROPOUT)
        before = {k: v.clone() for k, v in model.named_parameters()}
        runner = EagerRunner(model, spec(decay), torch.device("cpu"))
        batch = padded_batch(1200, 7) | {"loss_share": torch.tensor(1.0), "step_weight": torch.tensor(1.0)}
        runner.train_step([batch])
        moves[decay] = {k: v.detach() - before[k] for k, v in model.named_parameters()}
        assert [g["lr"] for g in runner.optimizer.param_groups] == [0.1 * g.get("lr_scale", 1.0)
                                                                    for g in runner.optimizer.param_groups]
        assert runner.lr == 0.1  # the head's, the peak lr
    for name, move in moves[1.0].items():
        assert move.abs().max() > 0, name
        torch.testing.assert_close(moves[0.5][name], depth_scale(name, 0.5) * move, rtol=1e-4, atol=2e-7)


def test_layer_decay_one_is_the_old_optimizer_exactly() -> None:
    """decay 1.0 (the default): the two old groups, and AdamW steps bit-identical to the optimizer and
    LambdaLR built the old way."""
    default = OptimSpec("adamw", 1e-3, 0.01, (0.9, 0.999), 1e-8, 0.0, warmup_steps=2, total_steps=6,
                        schedule="linear", max_gradient_norm=1.0)
    explicit = OptimSpec(**{**vars(default), "layer_decay": 1.0})
    ours = tiny_bert()
    groups = explicit.param_groups(ours)
    assert [sorted(g) for g in groups] == [["params", "weight_decay"]] * 2
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in g["params"]]
                                                              for g in default.param_groups(ours)]
    runner = EagerRunner(ours, explicit, torch.device("cpu"))
    old = tiny_bert()
    optimizer = torch.optim.AdamW(default.param_groups(old), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: default.lr_factor(step))
    for seed in range(4):
        batch = padded_batch(1200, 7, seed=seed)
        torch.manual_seed(seed)  # the same dropout masks on both sides
        runner.train_step([batch | {"loss_share": torch.tensor(1.0), "step_weight": torch.tensor(1.0)}])
        old.train()
        torch.manual_seed(seed)
        _, loss = old(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(old.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in ours.state_dict().items())
    assert runner.scheduler.state_dict() == scheduler.state_dict()
    assert [g["lr"] for g in runner.optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_layer_decay_needs_a_model_that_says_how_deep_its_parameters_are() -> None:
    with pytest.raises(ConfigError, match=r"^optimizer.layer_decay=0.5: the model \(Linear\) does not say how deep"):
        spec(0.5).param_groups(torch.nn.Linear(2, 2))


@pytest.mark.cli
def test_layer_decay_run_trains_evaluates_and_resumes_bit_identically(tmp_path: Path) -> None:
    common = ["run", "--config", str(TINY), *SMALL, *ONE_THREAD, "--set", "runconfig.max_steps=4",
              "--set", "runconfig.checkpoint_steps=2", "--set", "optimizer.layer_decay=0.5"]
    straight = run_tc(*common, "--model-dir", str(tmp_path / "straight"), "--json", check=True)
    assert "f1" in json.loads(straight.stdout.strip().splitlines()[-1])
    resumed = run_tc(*common, "--model-dir", str(tmp_path / "resumed"), "--mode", "train",
                     "--checkpoint-path", str(tmp_path / "straight" / "checkpoint_2.pt"), check=True)
    assert "training 2 steps" in resumed.stderr
    ours, theirs = (torch.load(tmp_path / d / "checkpoint_4.pt", weights_only=True) for d in ("resumed", "straight"))
    assert ours["model"].keys() == theirs["model"].keys()
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in ours["model"])
    groups = theirs["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert [g["lr"] for g in groups] == pytest.approx([groups[0]["lr"] * g["lr_scale"] for g in groups])
    assert groups == ours["optimizer"]["param_groups"]


def step_losses(model_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_jsonl(model_dir / "metrics.jsonl") if "loss" in e}


EXACT = ["--mode", "train", "--config", str(TINY), "--set", "train_input.max_sentences=128", "--set",
         "runconfig.max_steps=4", "--set", "runconfig.log_steps=1", "--set", "runconfig.selection_split=null",
         *[x for k in NO_DROPOUT for x in ("--set", f"model.{k}=0")]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_deepspeed_zero2_follows_the_layer_decay_of_one_process(tmp_path: Path) -> None:
    decay = ["--set", "optimizer.layer_decay=0.5"]
    run_tc("run", "--backend", "deepspeed", "--num-processes", "2", *EXACT, *decay, "--model-dir", str(tmp_path / "ds"),
           env={"DS_ACCELERATOR": "cpu"}, check=True)
    for name, extra in (("one", decay), ("off", [])):
        run_tc("run", "--backend", "cpu", *EXACT, *extra, "--model-dir", str(tmp_path / name), check=True)
    ours, theirs, off = (step_losses(tmp_path / d) for d in ("ds", "one", "off"))
    assert sorted(ours) == sorted(theirs) == [1, 2, 3, 4]
    assert all(ours[s] == pytest.approx(theirs[s], rel=1e-5) for s in ours), (ours, theirs)
    assert abs(theirs[4] - off[4]) > 1e-3  # the decay changed the run


@pytest.mark.cerebras
@pytest.mark.skipif(not CEREBRAS_PYTHON, reason="TC_CEREBRAS_PYTHON is not set (bash .ci/cerebras_env.sh)")
def test_cerebras_run_with_layer_decay_resumes_exactly(tmp_path: Path) -> None:
    short = ["run", "--backend", "cerebras", "--set", "cerebras.backend_type=CPU", *EXACT, "--set",
             "runconfig.checkpoint_steps=2", "--set", "optimizer.layer_decay=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run([CEREBRAS_PYTHON, "-m", "tc.cli", *short, "--model-dir", str(tmp_path / "whole")], check=True,
                   cwd=tmp_path, env=env, capture_output=True, timeout=900)
    (tmp_path / "resumed").mkdir()
    for name in ("vocab.txt", "label2id.json", "tc_task.json"):
        shutil.copy(tmp_path / "whole" / name, tmp_path / "resumed" / name)
    subprocess.run([CEREBRAS_PYTHON, "-m", "tc.cli", *short, "--model-dir", str(tmp_path / "resumed"),
                    "--checkpoint-path", str(tmp_path / "whole" / "checkpoint_2.mdl")], check=True, cwd=tmp_path,
                   env=env, capture_output=True, timeout=900)
    a, b = (torch.load(tmp_path / d / "checkpoint_4.pt", weights_only=True) for d in ("whole", "resumed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    groups = torch.load(tmp_path / "whole" / "checkpoint_2.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert [g["lr"] for g in groups] == pytest.approx([groups[0]["lr"] * g["lr_scale"] for g in groups])


CSTORCH_SCHEDULE = """
import json, sys, tempfile
import cerebras.pytorch as cstorch
from tc.backends.cerebras import build_optimizer, build_scheduler
from tc.core.interfaces import OptimSpec
from tc.tasks.token_cls.model import PRESETS, BertConfig, BertForTokenClassification

cstorch.backend("CPU", artifact_dir=tempfile.mkdtemp())
model = BertForTokenClassification(BertConfig(**PRESETS["tiny"], vocab_size=100, num_classes=3))
out = []
for warmup, total, kind, start, optimizer in json.loads(sys.argv[1]):
    spec = OptimSpec(optimizer, 1e-3, 0.01, (0.9, 0.999), 1e-8, 0.0, warmup, total, kind, None, layer_decay=0.5)
    opt = build_optimizer(spec, model)
    sched = build_scheduler(spec, opt, start)
    used = []
    for _ in range(start, total + 2):
        used.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    out.append({"used": used, "scales": [g["lr_scale"] for g in opt.param_groups]})
print(json.dumps(out))
"""


@pytest.mark.cerebras
@pytest.mark.skipif(not CEREBRAS_PYTHON, reason="TC_CEREBRAS_PYTHON is not set (bash .ci/cerebras_env.sh)")
def test_cstorch_schedule_scales_each_group_also_when_resumed() -> None:
    cases = [(3, 10, "linear", 0, "adamw"), (3, 10, "linear", 2, "adam"), (3, 10, "linear", 6, "sgd"),
             (4, 9, "constant", 1, "adamw")]
    proc = subprocess.run([CEREBRAS_PYTHON, "-c", CSTORCH_SCHEDULE, json.dumps(cases)], check=True, cwd=Path.cwd(),
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=300)
    for (warmup, total, kind, start, _), got in zip(cases, json.loads(proc.stdout.splitlines()[-1]), strict=True):
        assert got["scales"] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
        plain = OptimSpec("adamw", 1e-3, 0.0, (0.9, 0.999), 1e-8, 0.0, warmup, total, kind, None)
        expected = [[1e-3 * plain.lr_factor(step) * s for s in got["scales"]] for step in range(start, total + 2)]
        assert np.allclose(got["used"], expected, rtol=1e-5, atol=1e-12), (warmup, total, kind, start)


CASES: dict[str, Case] = {
    "layer-decay-zero": Case(tiny_run(["--set", "optimizer.layer_decay=0"]),
                             lambda e: "--set: optimizer.layer_decay: Input should be greater than 0 (got 0)"),
    "layer-decay-above-one": Case(tiny_run(["--set", "optimizer.layer_decay=1.5"]),
                                  lambda e: "--set: optimizer.layer_decay: Input should be less than or equal to 1 "
                                            "(got 1.5)"),
    "layer-decay-resume-other-groups": Case(
        tiny_run(lambda e: ["--mode", "train", "--checkpoint-path", str(e.ckpt), "--set", "optimizer.layer_decay=0.5"]),
        lambda e: f"{e.ckpt}: its optimizer state has 2 parameter groups, this run has 8 (optimizer.layer_decay "
                  "differs from the run that wrote it); keep that layer_decay, or load the weights only "
                  "(--load-checkpoint-states model)", needs_training=True),
}
DOCUMENTED = set(CASES)

test_bad_input_gives_one_clear_line = case_test(CASES)
