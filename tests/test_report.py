"""``tc report MODEL_DIR``: a readable PNG and terminal tables from a real run's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import TINY_STEPS, run_tc

from tc.report import read_history, read_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.cli
def test_png_and_tables(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    png = tmp_path / "sub" / "run.png"
    proc = run_tc("report", str(model_dir), "--output", str(png), check=True)
    assert png.read_bytes()[:8] == PNG_MAGIC
    image = imread(str(png))
    height, width = image.shape[:2]
    assert width >= 800 and height >= 500
    assert image[..., :3].std() > 0.05  # curves and a table, not a blank canvas
    test = json.loads((model_dir / "eval_results_test.json").read_text())
    out = proc.stdout
    assert "devel scores" in out and "test scores" in out and "micro avg" in out
    assert f"{test['f1']:.2f}" in out
    assert f"{TINY_STEPS} steps" in out
    for name in test["per_type"]:
        assert name in out


@pytest.mark.cli
def test_default_output_is_in_the_model_dir(model_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    proc = run_tc("report", str(model_dir), check=True)
    assert (model_dir / "report.png").read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {model_dir / 'report.png'}" in proc.stdout


@pytest.mark.cli
def test_without_matplotlib_prints_a_hint_and_the_table(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib blocked for this test')\n")
    png = tmp_path / "never.png"
    path = os.pathsep.join(p for p in (str(blocker.parent), os.environ.get("PYTHONPATH", "")) if p)
    proc = run_tc("report", str(model_dir), "-o", str(png), env={"PYTHONPATH": path}, check=True)
    hint = [line for line in proc.stdout.splitlines() if "pip install 'tc[report]'" in line]
    assert len(hint) == 1
    assert "micro avg" in proc.stdout
    assert not png.exists()


@pytest.mark.cli
def test_user_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    proc = run_tc("report", str(missing))
    assert proc.returncode == 2 and f"{missing}: model directory not found" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_tc("report", str(empty))
    assert proc.returncode == 2 and f"{empty}: no metrics.jsonl" in proc.stderr
    (empty / "eval_results_test.json").write_text("{truncated")
    proc = run_tc("report", str(empty))
    assert proc.returncode == 2 and "eval_results_test.json: unreadable" in proc.stderr


def test_history_of_a_resumed_run(tmp_path: Path) -> None:
    """A resumed run re-logs steps after its checkpoint (the later entry wins); a line cut short by a
    crash is skipped and counted, not fatal."""
    lines = [
        {"step": 10, "loss": 0.9, "lr": 1e-3},
        {"step": 20, "loss": 0.8, "lr": 1e-3},
        {"step": 20, "split": "devel", "f1": 10.0, "precision": 9.0, "recall": 11.0},
        {"step": 20, "loss": 0.7, "lr": 1e-3},
        {"step": 30, "loss": 0.5, "lr": 5e-4},
        {"step": 30, "split": "devel", "f1": 30.0},
        {"split": "test", "f1": 25.0, "final": True},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 40, "lo')
    history = read_history(path)
    assert [(p["step"], p["loss"]) for p in history.train] == [(10, 0.9), (20, 0.7), (30, 0.5)]
    assert [p["f1"] for p in history.evals["devel"]] == [10.0, 30.0]
    assert history.best("devel")["step"] == 30
    assert history.skipped_lines == [8]

    (tmp_path / "eval_results.json").write_text(json.dumps({"f1": 25.0, "split": "test"}))
    (tmp_path / "eval_results_devel.json").write_text(json.dumps({"f1": 30.0, "split": "devel"}))
    assert list(read_results(tmp_path)) == ["devel", "test"]
