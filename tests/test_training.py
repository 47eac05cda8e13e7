"""Short real fine-tunes through the CLI: learning happens, and the loop's arithmetic is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DATA, TINY, read_jsonl, run_tc

NO_DROPOUT = ["--set", "model.dropout_rate=0", "--set", "model.attention_dropout_rate=0",
              "--set", "model.encoder_output_dropout_rate=0"]


def final_metrics(proc_stdout: str) -> dict:
    return json.loads(proc_stdout.strip().splitlines()[-1])


@pytest.mark.cli
def test_short_fine_tune_beats_no_learning_baseline(tmp_path: Path) -> None:
    """150 steps of the tiny BERT on a BC5CDR-chem slice vs the same model that cannot learn (lr ~ 0)."""
    trained = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "t"), "--json", check=True)
    baseline = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "b"), "--json",
                      "--set", "optimizer.learning_rate=1e-12", check=True)
    f1, base = final_metrics(trained.stdout)["f1"], final_metrics(baseline.stdout)["f1"]
    assert f1 >= base + 20, (f1, base)
    losses = [e["loss"] for e in read_jsonl(tmp_path / "t" / "metrics.jsonl") if "loss" in e]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])
    devel = [e for e in read_jsonl(tmp_path / "t" / "metrics.jsonl") if e.get("split") == "devel"]
    assert [e["step"] for e in devel] == [50, 100, 150]
    results = json.loads((tmp_path / "t" / "eval_results.json").read_text())
    assert results["split"] == "test" and results["f1"] == f1
    assert set(results["per_type"]) == {"Chemical"} and "token_macro_f1" in results
    assert (tmp_path / "t" / "best_model.pt").exists()


@pytest.mark.cli
@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path, accum: int) -> None:
    common = ["run", "--config", str(TINY), "--mode", "train", "--set", "runconfig.max_steps=6",
              "--set", "runconfig.log_steps=1", "--set", "runconfig.selection_split=null", *NO_DROPOUT]
    run_tc(*common, "--model-dir", str(tmp_path / "one"), check=True)
    run_tc(*common, "--model-dir", str(tmp_path / "acc"), "--set", f"runconfig.grad_accum_steps={accum}", check=True)
    one = [e["loss"] for e in read_jsonl(tmp_path / "one" / "metrics.jsonl") if "loss" in e]
    acc = [e["loss"] for e in read_jsonl(tmp_path / "acc" / "metrics.jsonl") if "loss" in e]
    assert len(one) == len(acc) == 6
    assert acc == pytest.approx(one, rel=1e-4)


@pytest.mark.cli
def test_early_stopping_and_seed_label_scheme(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path), "--json",
                  "--set", "train_input.label_scheme=seed", "--set", "runconfig.eval_frequency=10",
                  "--set", "runconfig.max_steps=400", "--set", "runconfig.early_stopping_patience=2",
                  "--set", "optimizer.learning_rate=1e-12", check=True)
    assert "early stopping at step" in proc.stderr
    labels = json.loads((tmp_path / "label2id.json").read_text())
    assert list(labels) == ["[PAD]", "B", "I", "O", "X", "[CLS]", "[SEP]"]
    steps = [e["step"] for e in read_jsonl(tmp_path / "metrics.jsonl") if e.get("split") == "devel"]
    assert steps[-1] < 400


@pytest.mark.cli
def test_prepare_then_train_from_the_prepared_folder(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    run_tc("prepare", "token_cls", "--data-dir", str(DATA), "--output-dir", str(out),
           "--max-seq-length", "64", check=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"]["sentences"] == 4560 and meta["labels"] == ["B-Chemical", "I-Chemical", "O"]
    assert json.loads((out / "params.json").read_text())["max_seq_length"] == 64
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "m"), "--json",
                  "--set", f"train_input.data_dir={out}", "--set", "runconfig.max_steps=5", check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["split"] == "test"
    raw = run_tc("run", "--config", str(TINY), "--dry-run", "--set", f"train_input.data_dir={out}", check=True)
    assert "800 sentences" in raw.stdout


def test_step_weight_scales_the_gradient_but_not_the_reported_loss() -> None:
    """What epoch loss normalisation relies on in the eager runner: with plain SGD a step of weight w
    moves every parameter w times as far, while the logged loss stays the batch's token mean."""
    import torch
    from helpers import padded_batch, tiny_bert

    from tc.backends.eager import EagerRunner
    from tc.core.interfaces import OptimSpec

    spec = OptimSpec("sgd", 0.1, 0.0, (0.9, 0.999), 1e-8, 0.0, warmup_steps=0, total_steps=10,
                     schedule="constant", max_gradient_norm=None)
    moves, losses = [], []
    for weight in (1.0, 2.5):
        model = tiny_bert(dropout_rate=0, attention_dropout_rate=0, encoder_output_dropout_rate=0)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        runner = EagerRunner(model, spec, torch.device("cpu"))
        batch = padded_batch(1200, 7) | {"loss_share": torch.tensor(1.0), "step_weight": torch.tensor(weight)}
        losses.append(runner.train_step([batch]).loss)
        moves.append(torch.cat([(v - before[k]).flatten() for k, v in model.state_dict().items()]))
    assert losses[0] == losses[1]
    assert moves[0].abs().max() > 1e-3
    torch.testing.assert_close(moves[1], 2.5 * moves[0], rtol=1e-3, atol=1e-6)  # float32 rounding of w + dw
