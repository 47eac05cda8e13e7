"""The deepspeed backend on real ranks: ``tc run --backend deepspeed --num-processes 2`` on CPU (gloo).

A 2-rank ZeRO-2 run must train like one process over the same global batches, evaluate to the same
metrics, write a consolidated checkpoint the cpu backend loads, and resume after every process of the
run was killed. Each multi-rank run takes ~20 s on two cores; the config checks run no ranks at all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import TC, TINY, Payload, read_jsonl, run_tc, tiny_job, wait_for, weights

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")

ENV = {"DS_ACCELERATOR": "cpu"}
STEPS = 6
EXACT = [
    "--set", f"runconfig.max_steps={STEPS}", "--set", "runconfig.log_steps=1",
    "--set", "runconfig.checkpoint_steps=2", "--set", "runconfig.eval_frequency=2",
    "--set", "runconfig.keep_last_n=10", "--set", "eval_input.split=devel",
    # each step's gradient scaled by its own weight, as one process does; with a clip norm some steps
    # stay under (the weight shows) and some are clipped (the clip shows)
    "--set", "runconfig.loss_normalization=epoch", "--set", "optimizer.max_gradient_norm=3.0",
    # no dropout anywhere: ranks draw different random masks than one process would
    "--set", "model.dropout_rate=0", "--set", "model.attention_dropout_rate=0",
    "--set", "model.encoder_output_dropout_rate=0",
    # first pieces only: the random tiny model then still predicts entities after 2 steps, so the eval
    # equality below compares real mentions (under label-all, the default, it predicts none by step 6);
    # the datasets are the task's, the same for every backend
    "--set", "train_input.label_all_subwords=false",
]
METRIC_KEYS = ("f1", "precision", "recall", "per_type", "token_macro_f1", "entities", "sentences")


def tc_args(backend: str, model_dir: Path, *extra: str) -> list[str]:
    ranks = ["--num-processes", "2"] if backend == "deepspeed" else []
    return ["run", "--task", "token_cls", "--backend", backend, *ranks, "--config", str(TINY),
            "--model-dir", str(model_dir), *EXACT, *extra]


def losses(model_dir: Path) -> dict[int, float]:
    """Per-step training loss; a resumed run appends, so the last entry of a step wins."""
    return {e["step"]: e["loss"] for e in read_jsonl(model_dir / "metrics.jsonl") if "loss" in e}


def results(model_dir: Path) -> dict[str, Any]:
    metrics = json.loads((model_dir / "eval_results.json").read_text())
    return {k: metrics[k] for k in METRIC_KEYS}


def kill_everything(root: subprocess.Popen[str]) -> None:
    """SIGKILL the CLI, the launcher and every rank, as a crash would: torchrun starts its ranks in
    sessions of their own, so killing only the process we started would leave them training."""
    import psutil

    tree = psutil.Process(root.pid)
    everyone = [*tree.children(recursive=True), tree]
    for proc in everyone:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    root.wait()
    psutil.wait_procs(everyone, timeout=30)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("cpu")
    run_tc(*tc_args("cpu", model_dir), check=True)
    return model_dir


@pytest.fixture(scope="module")
def zero2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("zero2")
    run_tc(*tc_args("deepspeed", model_dir), env=ENV, check=True)
    return model_dir


# -- training and evaluation on 2 ranks ----------------------------------------------------------
@pytest.mark.slow
def test_zero2_step_losses_match_one_process(single: Path, zero2: Path) -> None:
    ours, theirs = losses(zero2), losses(single)
    assert sorted(ours) == sorted(theirs) == list(range(1, STEPS + 1))
    for step in ours:
        assert ours[step] == pytest.approx(theirs[step], rel=1e-4), f"step {step}"
    assert theirs[STEPS] < theirs[1] * 0.8  # it trained, so equal losses are not equal constants


@pytest.mark.slow
def test_checkpoints_are_deepspeed_dirs_plus_consolidated_files(single: Path, zero2: Path) -> None:
    for step in (2, 4, 6):
        folder = zero2 / f"checkpoint_{step}.ds"
        assert (folder / "mp_rank_00_model_states.pt").is_file()
        assert len(list(folder.glob("*_optim_states.pt"))) == 2  # ZeRO-2: one optimizer shard per rank
        single_file = torch.load(zero2 / f"checkpoint_{step}.pt", weights_only=True)
        assert single_file["global_step"] == step
        assert {"model", "lr_scheduler", "rng", "dataloader", "meta"} <= set(single_file)
    assert not list(zero2.glob(".*staging")) and not (zero2 / "zero_to_fp32.py").exists()
    ours, theirs = weights(zero2 / "checkpoint_6.pt"), weights(single / "checkpoint_6.pt")
    assert list(ours) == list(theirs)  # plain tc keys, in the module's own order
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype == torch.float32
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
def test_distributed_eval_equals_single_process_eval(zero2: Path, tmp_path: Path) -> None:
    """Same weights, evaluated by 2 ranks from the DeepSpeed directory and by the cpu backend from the
    consolidated file: identical metrics. Step 2's model still predicts entities, so F1 is not zero."""
    two = tmp_path / "two"
    run_tc("run", "--task", "token_cls", "--backend", "deepspeed", "--num-processes", "2", "--mode", "eval",
           "--config", str(TINY), "--model-dir", str(two), "--set", "eval_input.split=devel",
           "--checkpoint-path", str(zero2 / "checkpoint_2.ds"), env=ENV, check=True)
    one = tmp_path / "one"
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--mode", "eval", "--config", str(TINY),
           "--model-dir", str(one), "--set", "eval_input.split=devel",
           "--checkpoint-path", str(zero2 / "checkpoint_2.pt"), check=True)
    assert results(one)["f1"] > 0
    assert results(two) == results(one)


@pytest.mark.slow
def test_final_eval_after_training_uses_best_weights_on_all_ranks(zero2: Path, tmp_path: Path) -> None:
    """The 2-rank run's final evaluation (best devel weights swapped into the engine) equals the cpu
    backend evaluating the best-model file the run wrote."""
    best = torch.load(zero2 / "best_model.pt", weights_only=True)
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--mode", "eval", "--config", str(TINY),
           "--model-dir", str(tmp_path), "--set", "eval_input.split=devel",
           "--checkpoint-path", str(zero2 / "best_model.pt"), check=True)
    assert best["global_step"] in (2, 4, 6)
    assert results(zero2) == results(tmp_path)


@pytest.mark.slow
def test_resume_after_killing_every_process(zero2: Path, tmp_path: Path) -> None:
    args = tc_args("deepspeed", tmp_path)
    env = {**os.environ, "COLUMNS": "200", **ENV}
    proc = subprocess.Popen([TC, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
    metrics = tmp_path / "metrics.jsonl"
    try:  # kill between checkpoints: step 3 logged, so checkpoint_2.ds is complete and 6 is not written
        wait_for(lambda: metrics.exists() and max(losses(tmp_path), default=0) >= 3, proc, timeout=300)
    finally:
        kill_everything(proc)
    saved = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("checkpoint_*.ds"))
    assert saved and max(saved) < STEPS
    resumed = run_tc(*args, env=ENV, check=True)
    assert f"resuming from {tmp_path / f'checkpoint_{max(saved)}.ds'}" in " ".join(resumed.stderr.split())
    ours, theirs = losses(tmp_path), losses(zero2)
    assert [ours[s] for s in range(max(saved) + 1, STEPS + 1)] == [theirs[s] for s in range(max(saved) + 1, STEPS + 1)]
    final, straight = weights(tmp_path / f"checkpoint_{STEPS}.pt"), weights(zero2 / f"checkpoint_{STEPS}.pt")
    assert all(torch.equal(final[k], straight[k]) for k in straight)
    assert results(tmp_path) == results(zero2)


# -- checks that refuse before any rank starts -------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-processes", "3"], "train_input.batch_size=16 must divide by deepspeed.num_processes"),
        (["--num-processes", "2", "--set", "deepspeed.offload_param=cpu"], "deepspeed.offload_param=cpu needs"),
        (["--num-processes", "2", "--set", "runconfig.precision=fp16"], "fp16 only on CUDA"),
        (["--num-processes", "2", "--set", "deepspeed.config={train_batch_size: 64}"],
         "deepspeed.config.train_batch_size=64 conflicts with train_input.batch_size"),
        (["--num-processes", "2", "--set", "deepspeed.config={zero_optimization: {stage: 2, bogus_key: 1}}"],
         "deepspeed.config: DeepSpeed rejects the config"),
    ],
)
@pytest.mark.cli
def test_bad_settings_fail_before_launching(tmp_path: Path, extra: list[str], message: str) -> None:
    proc = run_tc("run", "--task", "token_cls", "--backend", "deepspeed", "--config", str(TINY),
                  "--model-dir", str(tmp_path), *extra, env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert "torch.distributed" not in proc.stderr  # no rank was started
    assert not list(tmp_path.iterdir())


def _config(*sets: str) -> Any:
    return tiny_job(*sets).cfg


def test_generated_deepspeed_config() -> None:
    from tc.backends.deepspeed import deepspeed_config

    cfg = _config("runconfig.grad_accum_steps=2", "runconfig.precision=bf16", "deepspeed.zero_stage=1",
                  "deepspeed.config={zero_optimization: {reduce_bucket_size: 1000}, bf16: {enabled: true}}")
    ds = deepspeed_config(cfg, world=2)
    assert ds["train_batch_size"] == 16 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["gradient_clipping"] == 1.0 and ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    assert ds["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 1000}


def test_relaunch_command_only_outside_a_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from tc.backends.deepspeed import DeepSpeedBackend

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    backend = DeepSpeedBackend(_config("deepspeed.num_processes=2", "deepspeed.master_port=29555"))
    command = backend.relaunch_command(["run", "--backend", "deepspeed"])
    assert command is not None
    assert command[1:] == ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", "29555", "-m", "tc.cli",
                           "run", "--backend", "deepspeed"]
    assert DeepSpeedBackend(_config()).relaunch_command(["run"]) is None  # one process: no launcher
    monkeypatch.setenv("RANK", "1")
    assert backend.relaunch_command(["run"]) is None  # a rank never relaunches


def test_pickled_code_in_a_deepspeed_dir_is_refused(tmp_path: Path) -> None:
    from tc.backends.deepspeed import DeepSpeedBackend
    from tc.core.errors import CheckpointError

    folder = tmp_path / "checkpoint_2.ds"
    folder.mkdir()
    torch.save({"module": {"w": torch.zeros(1)}}, folder / "mp_rank_00_model_states.pt")
    optim_states = folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": Payload(tmp_path / "pwned")}, optim_states)
    with pytest.raises(CheckpointError, match="refusing to load"):
        DeepSpeedBackend(_config()).load_checkpoint(folder)
    assert not (tmp_path / "pwned").exists()
    shutil.rmtree(folder)
