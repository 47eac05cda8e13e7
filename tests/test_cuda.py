"""The cuda backend: a real training run where a GPU exists; an honest refusal where none does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, read_jsonl, run_tc, tiny_job

from tc.backends.cuda import CudaBackend

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.mark.cli
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


def cuda_config(*sets: str):  # type: ignore[no-untyped-def]
    return tiny_job(*sets).cfg


def test_dry_run_path_knows_the_device_before_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dry-run`` describes a backend that was constructed, never set up: the GPU index and the
    precision come from the config alone (this used to read ``self.device``, which only setup() set)."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert CudaBackend(cuda_config()).device == torch.device("cuda", 0)
    assert CudaBackend(cuda_config("cuda.device=3")).device == torch.device("cuda", 3)
    monkeypatch.setenv("LOCAL_RANK", "1")
    backend = CudaBackend(cuda_config("cuda.precision=fp16"))
    assert backend.device == torch.device("cuda", 1)
    assert backend.precision().name == "fp16" and backend.precision().key == "cuda.precision"
    expected = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    assert CudaBackend(cuda_config()).precision().name == expected  # fp32 default: bf16 where the GPU has it


@pytest.mark.cli
def test_dry_run_describes_the_cuda_backend(tmp_path: Path) -> None:
    proc = run_tc("run", "--backend", "cuda", "--config", str(TINY), "--model-dir", str(tmp_path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    if torch.cuda.is_available():
        assert "cuda (available)" in proc.stdout
        assert torch.cuda.get_device_name(0) in proc.stdout
    else:
        assert "cuda (not available: no CUDA device" in proc.stdout
