"""A task names the metric that selects its checkpoints (``Task.selection_metric``, ``selection_mode``,
``metric_label``) and how its per-example predictions come out of a batch (``predictions_from_outputs``);
the loop, ``tc run``'s last line and ``tc report`` read them from the task, not a hard-wired ``f1``.

The example plugin, pip-installed for real, selects by ``accuracy``; a plugin whose task names a metric
its ``evaluate`` does not return is refused in one line. The token task keeps ``f1`` (test_checkpoints,
test_training, test_report and test_plugins cover it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, error_line, pip_install_target, read_jsonl, run_tc, with_path, write

from tc.core.interfaces import per_position
from tc.core.trainer import Selection
from tc.tasks.token_cls.task import TokenClassification

EXAMPLE = ROOT / "examples" / "tc-example-plugin"
DOCUMENTED = {"selection-metric-missing"}  # docs/errors.md rows tested here
SELECTION = {"metric": "accuracy", "label": "token accuracy", "mode": "max"}
"""What the example plugin's results say selects its models."""

WRONG_METRIC = '''
from tc.plugins import hookimpl
from tc_example_plugin import ParityTagging


class WrongMetric(ParityTagging):
    name = "parity_wrong_metric"
    selection_metric = "f1"  # its evaluate() returns accuracy only


@hookimpl
def register_tasks(register):
    register(WrongMetric)
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example plugin and a plugin whose task names a metric it never returns, both pip-installed."""
    target = tmp_path_factory.mktemp("selection-plugins") / "site"
    pip_install_target(EXAMPLE, target)
    wrong = tmp_path_factory.mktemp("wrong-metric-src") / "tc-wrong-metric"
    write(wrong / "tc_wrong_metric.py", WRONG_METRIC)
    write(wrong / "pyproject.toml", '[build-system]\nrequires = ["setuptools>=68"]\n'
          'build-backend = "setuptools.build_meta"\n\n[project]\nname = "tc-wrong-metric"\nversion = "0.1.0"\n\n'
          '[project.entry-points.tc]\nwrong_metric = "tc_wrong_metric"\n\n'
          '[tool.setuptools]\npy-modules = ["tc_wrong_metric"]\n')
    pip_install_target(wrong, target)
    return with_path(target)


@pytest.mark.cli
def test_example_plugin_selects_its_best_checkpoint_by_accuracy(plugin_env: dict[str, str], tmp_path: Path) -> None:
    model_dir = tmp_path / "parity"
    proc = run_tc("run", "--task", "parity_tagging", "--backend", "single-thread", "--model-dir", str(model_dir),
                  "--set", "runconfig.max_steps=60", "--set", "runconfig.eval_frequency=10",
                  "--set", "optimizer.learning_rate=0.05", env=plugin_env, check=True)
    devel = [e for e in read_jsonl(model_dir / "metrics.jsonl") if e.get("split") == "devel"]
    assert [e["step"] for e in devel] == [10, 20, 30, 40, 50, 60]
    assert all(e["selection"] == SELECTION and "f1" not in e for e in devel)
    top = max(e["accuracy"] for e in devel)
    best_step = min(e["step"] for e in devel if e["accuracy"] == top)  # a tie keeps the earlier step
    assert top > 90  # parity is learnable; guessing gives ~50

    best = torch.load(model_dir / "best_model.pt", weights_only=True)
    assert (best["selection_metric"], best["accuracy"], best["global_step"]) == ("accuracy", top, best_step)
    assert "f1" not in best
    resume = torch.load(model_dir / "checkpoint_60.pt", weights_only=True)["selection"]
    assert resume == {"metric": "accuracy", "mode": "max", "best": top, "best_step": best_step,
                      "bad_evals": sum(e["step"] > best_step for e in devel)}
    for name in ("eval_results.json", "eval_results_test.json"):
        results = json.loads((model_dir / name).read_text())
        assert results["split"] == "test" and results["selection"] == SELECTION and "f1" not in results
    assert f"step 10: devel token accuracy {devel[0]['accuracy']:.2f}" in proc.stderr
    assert f"using the best devel checkpoint (step {best_step}, token accuracy {top:.2f})" in proc.stderr
    assert proc.stdout.startswith(f"test token accuracy {results['accuracy']:.2f}  (results: ")

    evaluated = run_tc("run", "--task", "parity_tagging", "--backend", "single-thread", "--model-dir",
                       str(model_dir), "--mode", "eval", env=plugin_env, check=True)
    assert f"evaluating weights from {model_dir / 'best_model.pt'}" in evaluated.stderr
    assert evaluated.stdout.startswith("test token accuracy ")

    report = run_tc("report", str(model_dir), env=plugin_env, check=True).stdout
    summary = report.splitlines()[0]
    assert f"best devel token accuracy {top:.2f} at step {best_step}" in summary
    assert f"test token accuracy {results['accuracy']:.2f}" in summary
    assert "F1" not in report and "entity-level" not in report
    headers = [line for line in report.splitlines() if "precision" in line]
    assert len(headers) == 2 and all("token accuracy" in line for line in headers)  # the score column's name


@pytest.mark.cli
def test_a_selection_metric_the_task_does_not_return_is_one_line(plugin_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_tc("run", "--task", "parity_wrong_metric", "--backend", "single-thread", "--model-dir",
                  str(tmp_path / "m"), "--set", "runconfig.max_steps=2", "--set", "runconfig.eval_frequency=1",
                  env=plugin_env)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == ("the parity_wrong_metric task's metrics have no number under 'f1', its "
                                "selection_metric (missing; its keys: accuracy)")
    assert not (tmp_path / "m" / "best_model.pt").exists()


def test_selection_follows_the_mode_and_resumes_old_checkpoints() -> None:
    """``min`` keeps the lowest score; a checkpoint from before tasks named their metric (``best_f1``)
    resumes an f1 task's selection, and one that selected by another metric starts afresh."""

    class Loss:
        selection_metric, selection_mode = "loss", "min"

    lowest = Selection.resume(Loss(), {})  # type: ignore[arg-type]
    assert [lowest.update(s, step) for step, s in enumerate((0.9, 0.5, 0.7, 0.5), start=1)] == [
        True, True, False, False]
    assert (lowest.best, lowest.best_step, lowest.bad_evals) == (0.5, 2, 2)

    old = {"best_f1": 71.5, "best_step": 40, "bad_evals": 1}
    token = TokenClassification
    assert (token.selection_metric, token.selection_mode, token.metric_label) == ("f1", "max", "entity-level F1")
    assert Selection.resume(token, old) == Selection("f1", "max", 71.5, 40, 1)  # type: ignore[arg-type]
    assert Selection.resume(token, {"best_f1": -1.0, "best_step": 0, "bad_evals": 0}).best is None  # type: ignore[arg-type]
    assert Selection.resume(Loss(), old) == Selection("loss", "min")  # type: ignore[arg-type]


def test_per_position_cuts_each_row_to_its_own_length() -> None:
    """The token task's reading of a batch: row ``i`` of a (B, T) output, padding cut to the example's length."""

    class Lengths:
        lengths = (3, 1, 2)

    outputs = torch.arange(12).reshape(3, 4)
    batch = {"index": torch.tensor([2, 0, 1])}
    rows = per_position(Lengths(), batch, outputs)  # type: ignore[arg-type]
    assert [r.tolist() for r in rows] == [[0, 1], [4, 5, 6], [8]]
    task = object.__new__(TokenClassification)
    assert [r.tolist() for r in task.predictions_from_outputs(Lengths(), batch, outputs)] == [[0, 1], [4, 5, 6], [8]]
