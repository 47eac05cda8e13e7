"""The cdr_relations task on the other backends, for real: 2 deepspeed ranks (ZeRO-2, gloo) and
cerebras.pytorch's CPU backend (its own venv). Each trains through the shared loop and writes a
checkpoint the cpu backend evaluates to the very metrics the run reported."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, run_tc

CONFIG = ROOT / "configs" / "tiny_cdr_relations.yaml"
NO_DROPOUT = ["--set", "model.dropout_rate=0", "--set", "model.attention_dropout_rate=0",
              "--set", "model.encoder_output_dropout_rate=0", "--set", "runconfig.max_steps=6",
              "--set", "runconfig.log_steps=1", "--set", "runconfig.selection_split=null"]
KEYS = ("f1", "precision", "recall", "predicted", "gold")
CEREBRAS_PYTHON = os.environ.get("TC_CEREBRAS_PYTHON", "")


def losses(model_dir: Path) -> list[float]:
    return [e["loss"] for e in map(json.loads, (model_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in e]


def cpu_eval(model_dir: Path, *extra: str) -> dict:
    proc = run_tc("run", "--task", "cdr_relations", "--backend", "cpu", "--mode", "eval", "--config", str(CONFIG),
                  "--model-dir", str(model_dir), "--set", "runconfig.num_threads=1", *extra, "--json", check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_two_deepspeed_ranks_train_and_evaluate_as_one_process(tmp_path: Path) -> None:
    ranks, single = tmp_path / "ranks", tmp_path / "single"
    run_tc("run", "--task", "cdr_relations", "--backend", "deepspeed", "--num-processes", "2", "--config",
           str(CONFIG), "--model-dir", str(ranks), *NO_DROPOUT, env={"DS_ACCELERATOR": "cpu"}, check=True)
    run_tc("run", "--task", "cdr_relations", "--backend", "cpu", "--config", str(CONFIG), "--model-dir", str(single),
           *NO_DROPOUT, "--set", "runconfig.num_threads=1", check=True)
    assert losses(ranks) == pytest.approx(losses(single), rel=1e-3, abs=1e-4)
    theirs = json.loads((ranks / "eval_results.json").read_text())
    ours = cpu_eval(ranks)
    assert {k: ours[k] for k in KEYS} == {k: theirs[k] for k in KEYS}


@pytest.mark.cerebras
@pytest.mark.skipif(not CEREBRAS_PYTHON, reason="TC_CEREBRAS_PYTHON is not set (bash .ci/cerebras_env.sh)")
def test_cstorch_cpu_backend_trains_and_its_checkpoint_evaluates_the_same_on_cpu(tmp_path: Path) -> None:
    """Static shapes (every batch padded to max_sequence_length and the pair arrays to the split's widest)
    through cstorch's traced step; the .pt it consolidates evaluates on the cpu backend to its metrics."""
    model_dir = tmp_path / "cs"
    proc = subprocess.run([CEREBRAS_PYTHON, "-m", "tc.cli", "run", "--task", "cdr_relations", "--backend", "cerebras",
                           "--config", str(CONFIG), "--set", "cerebras.backend_type=CPU", *NO_DROPOUT,
                           "--set", "runconfig.max_steps=4", "--model-dir", str(model_dir), "--json"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2", "COLUMNS": "200"},
                          cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (model_dir / "checkpoint_4.pt").is_file() and len(losses(model_dir)) == 4
    ours = cpu_eval(model_dir, "--set", "runconfig.max_steps=4", "--set", "runconfig.padding=static")
    assert ours["gold"] == theirs["gold"] and ours["predicted"] == theirs["predicted"]
    assert ours["f1"] == pytest.approx(theirs["f1"], abs=0.01)
