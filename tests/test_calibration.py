"""Entity-score calibration: ``tc calibrate`` on a real tiny model, and the ECE / temperature maths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ONE_THREAD, read_jsonl, run_tc

from tc.tasks.token_cls.calibration import (
    CALIBRATION_FILE,
    expected_calibration_error,
    fit_temperature,
    word_nll,
)

DOCS = ["Naloxone reverses the antihypertensive effect of clonidine.",
        "Lidocaine-induced cardiac asystole (after 5 mg/kg of cocaine) was observed in rats."]


DOCUMENTED = {"calibration-bad", "calibration-held-out"}
"""docs/errors.md rows tested here (a broken calibration.json, a held-out split that is the fitted one)."""


def predict(model_dir: Path, tmp_path: Path, name: str) -> list[dict]:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    out = tmp_path / f"{name}.jsonl"
    run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), "-q", *ONE_THREAD,
           check=True)
    return read_jsonl(out)


@pytest.mark.cli
def test_calibrate_lowers_entity_ece_and_moves_only_scores(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    before = predict(copy, tmp_path, "before")
    proc = run_tc("calibrate", "--model-dir", str(copy), *ONE_THREAD, check=True)
    assert "entity-score ECE" in proc.stdout and "held-out test: entity-score ECE" in proc.stdout
    stored = json.loads((copy / CALIBRATION_FILE).read_text())
    assert stored["split"] == "devel" and stored["predicted_entities"] > 0
    assert stored["entity_ece_after"] < stored["entity_ece_before"]
    held = stored["held_out"]  # measured on test, which the temperature never saw
    assert held["split"] == "test" and held["predicted_entities"] > 0
    assert 0 <= held["entity_ece_after"] <= 1 and held["entity_ece_before"] != held["entity_ece_after"]
    assert json.loads((copy / "eval_results.json").read_text())["entity_calibration"] == stored
    after = predict(copy, tmp_path, "after")
    spans = [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in before]
    assert [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in after] == spans
    assert any(spans)
    assert [e["score"] for r in after for e in r["entities"]] != [e["score"] for r in before for e in r["entities"]]
    import tc  # the API loads the calibrated dir as the CLI does (one loader): the same entities and scores

    with tc.load(str(copy), overrides=["runconfig.num_threads=1"]) as api:
        assert api.runner.temperature == stored["temperature"]
        assert api.predict(DOCS) == [r["entities"] for r in after]

    (copy / CALIBRATION_FILE).write_text("{", encoding="utf-8")
    proc = run_tc("predict", "--model-dir", str(copy), "-q", "-i", str(tmp_path / "docs.txt"), *ONE_THREAD)
    assert proc.returncode == 2
    assert f"error: {copy / CALIBRATION_FILE}: unreadable (" in proc.stderr and "rerun tc calibrate" in proc.stderr


@pytest.mark.cli
def test_held_out_split_must_differ_from_the_fitted_one(model_dir: Path) -> None:
    proc = run_tc("calibrate", "--model-dir", str(model_dir), "--held-out", "devel", *ONE_THREAD)
    assert proc.returncode == 2 and not (model_dir / CALIBRATION_FILE).exists()
    assert proc.stderr.strip() == ("error: --held-out devel: the split the temperature is fitted on (--split); "
                                   "pick another")


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20000, 3))
    true_t = 2.5
    probs = np.exp(logits / true_t)
    probs /= probs.sum(-1, keepdims=True)
    gold = np.array([rng.choice(3, p=p) for p in probs])
    assert fit_temperature(word_nll(logits, gold)) == pytest.approx(true_t, rel=0.05)


def test_expected_calibration_error() -> None:
    scores = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False])
    assert expected_calibration_error(scores, correct) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert expected_calibration_error(np.array([1.0]), np.array([True])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([]), np.array([], dtype=bool)) == 0.0
