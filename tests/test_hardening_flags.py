"""Flags accepted and ignored (issue #33, round three): ``--set`` keys that ``tc predict``, ``tc serve`` and
``tc calibrate`` cannot honour are refused in one line, and no message advises a flag its command lacks.

Every case runs the real ``tc`` in a subprocess in its own ``tmp_path``; the refusals come before a
model loads or a port is bound, so the shared tiny model is only read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ONE_THREAD, TINY_STEPS, refused, run_tc

DOCUMENTED = {
    "inference-set-model-key", "inference-set-seq-len", "inference-set-decoding", "inference-set-has-flag",
    "inference-set-training-key", "inference-set-other-backend", "inference-set-precision-onnx",
    "inference-weights-mismatch",
}
"""docs/errors.md rows ("Serve and flags (round three)") tested here."""

HONOURED = "--set here takes runconfig.num_threads, runconfig.precision and cpu.*"
CASES = {  # name -> (command and its flags, the --set, the message after "--set KEY=VALUE: ")
    "predict-model-key": (["predict"], "model.hidden_size=999",
                          "tc predict does not use model.hidden_size (the model is the one trained in {M}, as its "
                          f"tc_task.json says); {HONOURED}"),
    "predict-seq-len": (["predict"], "train_input.max_sequence_length=64",
                        "tc predict does not use train_input.max_sequence_length (it configures training data; "
                        "tokenization and window length are fixed by {M}/tc_task.json); longer texts are cut into "
                        "windows of the trained length, never truncated"),
    "predict-decoding": (["predict"], "model.decoding=argmax",
                         "tc predict does not use model.decoding (the model is the one trained in {M}, as its "
                         "tc_task.json says); tc run --mode eval --model-dir {M} --set model.decoding=... scores the "
                         "model decoded the other way"),
    "predict-batch-size": (["predict"], "eval_input.batch_size=4",
                           "tc predict does not use eval_input.batch_size; use --batch-size"),
    "predict-training-key": (["predict"], "runconfig.max_steps=3",
                             f"tc predict does not use runconfig.max_steps (it is a training setting); {HONOURED}"),
    "predict-optimizer": (["predict"], "optimizer.learning_rate=0.1",
                          f"tc predict does not use optimizer.learning_rate (nothing is trained); {HONOURED}"),
    "predict-section-mapping": (["predict"], "runconfig={num_threads: 1, seed: 3}",
                                f"tc predict does not use runconfig.seed (it is a training setting); {HONOURED}"),
    "predict-other-backend": (["predict"], "cuda.device=0",
                              "--backend cpu does not read the cuda section; use --backend cuda (or drop this --set)"),
    "predict-precision-onnx": (["predict", "--precision", "onnx"], "runconfig.precision=bf16",
                               "--precision onnx runs onnxruntime, which runconfig.precision does not change (it "
                               "sets --precision fp32's autocast)"),
    "serve-model-key": (["serve", "--port", "0"], "model.num_hidden_layers=1",
                        "tc serve does not use model.num_hidden_layers (the model is the one trained in {M}, as its "
                        f"tc_task.json says); {HONOURED}"),
    "serve-training-key": (["serve", "--port", "0"], "runconfig.seed=3",
                           f"tc serve does not use runconfig.seed (it is a training setting); {HONOURED}"),
    "serve-model-dir": (["serve", "--port", "0"], "runconfig.model_dir=elsewhere",
                        "tc serve does not use runconfig.model_dir; use --model-dir"),
    "calibrate-data-dir": (["calibrate"], "eval_input.data_dir=DIR",
                           "tc calibrate does not use eval_input.data_dir; use --data-dir"),
    "calibrate-seq-len": (["calibrate"], "train_input.max_sequence_length=64",
                          "tc calibrate does not use train_input.max_sequence_length (it configures training "
                          "data; tokenization and window length are fixed by {M}/tc_task.json); longer texts are "
                          "cut into windows of the trained length, never truncated"),
    "calibrate-checkpoint": (["calibrate"], "runconfig.checkpoint_path=x.pt",  # calibrate has no --checkpoint
                             "tc calibrate does not use runconfig.checkpoint_path (it is a training setting); "
                             f"{HONOURED}"),
}


@pytest.mark.cli
@pytest.mark.parametrize("name", CASES)
def test_a_set_the_command_cannot_honour_is_refused(name: str, tiny_model: Path, tmp_path: Path) -> None:
    command, assignment, message = CASES[name]
    proc = run_tc(command[0], "--model-dir", str(tiny_model), *command[1:], "--set", assignment, *ONE_THREAD,
                  cwd=tmp_path, timeout=300)
    expected = f"--set {assignment}: {message}".replace("{M}", str(tiny_model))
    assert refused(proc) == expected
    assert not (tiny_model / "calibration.json").exists()


@pytest.mark.cli
def test_the_settings_inference_honours_still_work(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("Naloxone reverses the effect of clonidine.\n", encoding="utf-8")
    proc = run_tc("predict", "--model-dir", str(tiny_model), "-i", str(tmp_path / "in.txt"), "--set",
                  "runconfig.precision=bf16", "--set", "runconfig={num_threads: 1}", "--set", "cpu.num_threads=1",
                  "-q", cwd=tmp_path, timeout=300, check=True)
    assert '"entities"' in proc.stdout


@pytest.mark.cli
def test_a_checkpoint_that_does_not_fit_names_no_flag_predict_lacks(tiny_model: Path, tmp_path: Path) -> None:
    """The strict-load error advised --disable-strict-checkpoint-loading, a flag of tc run only."""
    import torch

    state = torch.load(tiny_model / f"checkpoint_{TINY_STEPS}.pt", weights_only=True)
    del state["model"]["embeddings.word.weight"]
    other = tmp_path / "other.pt"
    torch.save(state, other)
    for command in (["predict"], ["export", str(tmp_path / "out")]):
        proc = run_tc(command[0], "--model-dir", str(tiny_model), "--checkpoint", str(other), *command[1:],
                      cwd=tmp_path, timeout=300)
        assert refused(proc) == (f"{other}: missing keys: embeddings.word.weight; a trained model loads whole "
                                 "(only tc run has --disable-strict-checkpoint-loading); give a checkpoint of the "
                                 f"model {tiny_model}/tc_task.json describes")
