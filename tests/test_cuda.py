"""The cuda backend: a real training run where a GPU exists; an honest refusal where none does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, read_jsonl, run_tc

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_backend_refuses_with_the_reason(tmp_path: Path) -> None:
    proc = run_tc("run", "--backend", "cuda", "--config", str(TINY), "--model-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "backend 'cuda' is not available here: no CUDA device" in proc.stderr
    assert not list(tmp_path.glob("checkpoint_*"))


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cuda_trains_and_evaluates(tmp_path: Path, precision: str) -> None:
    proc = run_tc("run", "--backend", "cuda", "--config", str(TINY), "--model-dir", str(tmp_path), "--json",
                  "--set", f"cuda.precision={precision}", check=True)
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    losses = [e["loss"] for e in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in e]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["f1"] > 20
    cpu = run_tc("run", "--backend", "cpu", "--config", str(TINY), "--model-dir", str(tmp_path), "--mode", "eval",
                 "--json", check=True)
    assert json.loads(cpu.stdout.strip().splitlines()[-1])["f1"] == pytest.approx(metrics["f1"], abs=1.0)


@needs_cuda
def test_cuda_static_padding_and_compile(tmp_path: Path) -> None:
    run_tc("run", "--backend", "cuda", "--config", str(TINY), "--model-dir", str(tmp_path), "--mode", "train",
           "--set", "runconfig.padding=static", "--set", "cuda.compile=true", "--set", "runconfig.max_steps=20",
           "--set", "runconfig.selection_split=null", check=True)
    assert (tmp_path / "checkpoint_20.pt").exists()
