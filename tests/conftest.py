"""Fixtures shared by the test modules; plain helpers are in helpers.py (``from helpers import ...``).

``tiny_model`` is the one trained tiny model of a session: the tiny config trained by the real CLI on one
thread. It is read-only by convention; a module or test that writes into a model directory works on a
copy (``model_copy``, or ``copy_model`` at module scope).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ONE_THREAD, SMALL, TINY, TINY_STEPS, TRAINED_STEP, copy_model, run_tc


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    return ["--task", "token_cls", "--config", str(TINY)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tc run --config configs/tiny_token_cls.yaml`` once per session (150 steps, one thread): weights,
    checkpoints, metrics and the inference assets. Do not write into it: take ``model_copy``."""
    out = tmp_path_factory.mktemp("tiny_model") / "model"
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--config", str(TINY), "--model-dir", str(out),
           *ONE_THREAD, "-q", check=True)
    assert (out / f"checkpoint_{TINY_STEPS}.pt").is_file()
    return out


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model for one test module: a copy, so what a module writes there (calibration, an ONNX
    cache, a report) is never seen by another module."""
    return copy_model(tiny_model, tmp_path_factory.mktemp("model_dir") / "model")


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """This test's own copy of the tiny model, free to change."""
    return copy_model(tiny_model, tmp_path / "model")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory after a 2-step training run on a few sentences (``SMALL``: checkpoint_2.pt,
    label2id.json, vocab.txt...), for the error cases that need a trained model."""
    model_dir = tmp_path_factory.mktemp("trained")
    run_tc("run", "--config", str(TINY), "--model-dir", str(model_dir), *SMALL, "--mode", "train", check=True)
    assert (model_dir / f"checkpoint_{TRAINED_STEP}.pt").exists()
    return model_dir
