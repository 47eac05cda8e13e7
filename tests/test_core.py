"""Core pieces without a backend: the batch plan, config loading, optimizer schedule, metrics."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import TINY, Rows, run_tc, tiny_job
from sklearn.metrics import f1_score

from tc.core.cadence import Cadence
from tc.core.config import OptimizerConfig, apply_override, load_raw, resolve_paths
from tc.core.errors import ConfigError
from tc.core.hardware import DeprecatedKey, resolve_precision
from tc.core.interfaces import OptimSpec, RankInfo, model_inputs
from tc.core.sampling import BatchPlan, check_divisible
from tc.tasks.token_cls.metrics import entity_scores, token_macro_f1

DOCUMENTED = {"threads-alias-conflict"}
"""docs/errors.md rows tested here (the deprecated thread key)."""


def epoch_rows(plan: BatchPlan, epoch: int) -> list[int]:
    return [int(i) for b in plan.epoch_batches(epoch) for i in b]


def test_plan_covers_every_row_once_per_epoch_and_reshuffles() -> None:
    plan = BatchPlan(Rows(1000), 32, train=True, seed=5)
    first, second = epoch_rows(plan, 0), epoch_rows(plan, 1)
    assert sorted(first) == list(range(1000)) == sorted(second)
    assert first != second
    assert epoch_rows(BatchPlan(Rows(1000), 32, train=True, seed=5), 0) == first  # depends on (seed, epoch) only


def test_bucketing_cuts_padding() -> None:
    rows = Rows(2000)
    def padded(bucket: bool) -> int:
        plan = BatchPlan(rows, 32, train=True, seed=1, bucket=bucket)
        return sum(len(b) * int(rows.lengths[b].max()) for b in plan.epoch_batches(0))
    assert padded(True) < 0.7 * padded(False)


def test_resume_position_continues_the_same_sequence() -> None:
    rows = Rows(300)
    full = [s.rows.tolist() for s in BatchPlan(rows, 16, train=True, seed=2, max_steps=50)]
    per_epoch = BatchPlan(rows, 16, train=True).steps_per_epoch()
    k = 23
    tail = BatchPlan(rows, 16, train=True, seed=2, start_epoch=k // per_epoch, start_position=k % per_epoch,
                     max_steps=50 - k)
    assert [s.rows.tolist() for s in tail] == full[k:]


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (1, 4), (2, 1), (2, 2), (4, 2)])
def test_rank_slices_partition_each_global_batch_and_shares_sum_to_one(world: int, accum: int) -> None:
    rows = Rows(400)
    for step in BatchPlan(rows, 32, train=True, seed=3, accum=accum, world_size=world, max_steps=20):
        parts = [step.for_rank(RankInfo(r, world)) for r in range(world)]
        seen = sorted(int(i) for p in parts for idx, _ in p for i in idx)
        assert seen == sorted(step.rows.tolist())
        assert sum(share for p in parts for _, share in p) == pytest.approx(1.0)
        assert all(len(p) == accum for p in parts)


def token_weights(plan: BatchPlan, world: int = 1) -> np.ndarray:
    """The gradient weight each training row's loss tokens get, per token: weight * share / tokens."""
    out = np.zeros(len(plan.dataset))
    for step in plan:
        for r in range(world):
            for rows, share in step.for_rank(RankInfo(r, world)):
                out[rows] = step.weight * share / plan.dataset.loss_tokens[rows].sum()
    return out


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 2)])
def test_epoch_normalisation_weighs_every_token_alike_under_bucketing(world: int, accum: int) -> None:
    rows = Rows(1000)
    def plan(norm: str) -> BatchPlan:
        return BatchPlan(rows, 32, train=True, seed=4, accum=accum, world_size=world, loss_normalization=norm)
    per_epoch = plan("epoch").steps_per_epoch()
    epoch = token_weights(dataclasses.replace(plan("epoch"), max_steps=per_epoch), world)
    kept = epoch > 0  # rows of a dropped partial batch on 2 ranks carry no weight
    mean_tokens = sum(int(rows.loss_tokens[b].sum()) for b in plan("epoch").epoch_batches(0)) / per_epoch
    assert np.allclose(epoch[kept], 1 / mean_tokens)
    weights = [s.weight for s in dataclasses.replace(plan("epoch"), max_steps=per_epoch)]
    assert np.mean(weights) == pytest.approx(1.0) and min(weights) < 0.7 < 1.3 < max(weights)
    # per-batch averaging: a token of a short (bucketed) batch weighs more than one of a long batch
    batch = token_weights(dataclasses.replace(plan("batch"), max_steps=per_epoch), world)
    short, long = rows.lengths < 20, rows.lengths > 80
    assert batch[short & kept].mean() > 3 * batch[long & kept].mean()
    assert all(s.weight == 1.0 for s in BatchPlan(rows, 32, train=False, loss_normalization="epoch"))


def test_eval_plan_is_one_ordered_pass_and_pads_short_ranks() -> None:
    rows = Rows(33)
    plan = BatchPlan(rows, 8, train=False, world_size=4)
    batches = list(plan)
    assert sorted(int(i) for s in batches for i in s.rows) == list(range(33))
    last = batches[-1]
    assert len(last.rows) == 1 and all(len(last.for_rank(RankInfo(r, 4))[0][0]) == 1 for r in range(4))


def test_lr_schedule_warmup_then_linear_decay() -> None:
    spec = OptimSpec("adamw", 1e-3, 0.01, (0.9, 0.999), 1e-8, 0.9, warmup_steps=10, total_steps=110,
                     schedule="linear", max_gradient_norm=1.0)
    factors = [spec.lr_factor(s) for s in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[109] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_config_paths_resolve_against_the_yaml_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "c.yaml"
    cfg.write_text("train_input:\n  data_dir: ../data\n  batch_size: 8\n")
    data, source = load_raw(cfg, ["train_input.vocab_file=v.txt", "runconfig.max_steps=5"])
    assert data["train_input"]["data_dir"] == str((tmp_path / "data").resolve())
    assert data["train_input"]["vocab_file"] == str(Path("v.txt").resolve())
    assert data["runconfig"]["max_steps"] == 5 and source.endswith("+ --set")
    assert resolve_paths({"a": {"x_file": "/abs"}}, tmp_path) == {"a": {"x_file": "/abs"}}


def test_bad_overrides_and_yaml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override({}, "train_input.batch_size")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_input:\n  batch_size: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: YAML syntax error"):
        load_raw(bad)
    assert OptimizerConfig(optimizer_type="AdamW").optimizer_type == "adamw"


def test_token_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    pred[:200] = gold[:200]
    expected = 100 * f1_score(gold, pred, average="macro")
    assert token_macro_f1(gold, pred, 5) == pytest.approx(expected, abs=1e-3)


def test_entity_scores_per_type_and_micro() -> None:
    gold = [["B-Chem", "I-Chem", "O", "B-Dis"], ["O", "B-Chem"]]
    pred = [["B-Chem", "I-Chem", "O", "O"], ["O", "B-Dis"]]
    scores = entity_scores(gold, pred)
    assert scores["per_type"]["Chem"]["f1"] == pytest.approx(100 * 2 * 0.5 / 1.5, abs=1e-3)
    assert scores["precision"] == pytest.approx(50.0) and scores["recall"] == pytest.approx(100 / 3, abs=1e-3)
    assert scores["entities"] == 3


def run_config(*sets: str):  # type: ignore[no-untyped-def]
    return tiny_job(*sets).cfg


def test_one_thread_key_and_its_deprecated_alias() -> None:
    assert run_config("runconfig.num_threads=2").runconfig.num_threads == 2
    with pytest.warns(DeprecatedKey, match=r"cpu.num_threads is deprecated: use runconfig.num_threads"):
        cfg = run_config("cpu.num_threads=3")
    assert cfg.runconfig.num_threads == 3 and "num_threads" not in cfg.cpu.model_dump()
    with pytest.raises(ConfigError, match=r"cpu.num_threads=3 conflicts with runconfig.num_threads=2"):
        run_config("cpu.num_threads=3", "runconfig.num_threads=2")


def test_one_precision_resolver() -> None:
    cfg = SimpleNamespace(runconfig=SimpleNamespace(precision="fp16"))
    with pytest.raises(ConfigError, match=r"^runconfig.precision: fp16 is not supported on the cpu backend "
                                          r"\(use bf16 or fp32\)$"):
        resolve_precision(cfg, "cpu", supported=("bf16", "fp32"))
    chosen = resolve_precision(cfg, "cuda", override="bf16", override_key="cuda.precision")
    assert (chosen.name, chosen.key) == ("bf16", "cuda.precision")
    fp32 = SimpleNamespace(runconfig=SimpleNamespace(precision="fp32"))
    assert resolve_precision(fp32, "cuda", instead_of_fp32=lambda: "bf16").name == "bf16"
    assert resolve_precision(fp32, "cuda", instead_of_fp32=lambda: None).autocast_dtype is None


def test_batch_divisibility_is_checked_once_for_every_backend() -> None:
    check_divisible(16, 2, 4)
    with pytest.raises(ConfigError, match=r"batch_size=16 must divide by deepspeed.num_processes \(3 ranks\) x "
                                          r"runconfig.grad_accum_steps=1"):
        check_divisible(16, 3, 1, ranks="deepspeed.num_processes")


def test_model_inputs_drop_the_core_keys_only() -> None:
    batch = {"input_ids": 1, "attention_mask": 2, "labels": 3, "label_mask": 4, "index": 5, "loss_share": 6,
             "step_weight": 7}
    assert model_inputs(batch) == {"input_ids": 1, "attention_mask": 2, "labels": 3, "label_mask": 4}
    assert model_inputs(batch, with_targets=False) == {"input_ids": 1, "attention_mask": 2, "label_mask": 4}


def test_cadence_is_the_loops_schedule() -> None:
    rc = SimpleNamespace(eval_frequency=50, checkpoint_steps=None, selection_split="devel", log_steps=10)
    cadence = Cadence.from_config(rc, per_epoch=50, total=150)
    assert [s for s in range(1, 151) if cadence.evaluates(s)] == [50, 100, 150]
    assert [s for s in range(1, 151) if cadence.checkpoints(s)] == [150]
    assert cadence.pauses(0, 150) == [50, 100, 150] and cadence.pauses(60, 120) == [100, 120]
    assert cadence.logs(10) and not cadence.logs(11) and cadence.logs(150)
    rc = SimpleNamespace(eval_frequency=None, checkpoint_steps=3, selection_split=None)
    no_selection = Cadence.from_config(rc, per_epoch=5, total=7)
    assert not any(no_selection.evaluates(s) for s in range(1, 8)) and no_selection.pauses(0, 7) == [3, 6, 7]


@pytest.mark.cli
def test_thread_alias_conflict_is_a_one_line_cli_error(tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path), "--dry-run",
                  "--set", "cpu.num_threads=3", "--set", "runconfig.num_threads=2")
    assert proc.returncode == 2
    assert " ".join(proc.stderr.split()) == (
        "error: cpu.num_threads=3 conflicts with runconfig.num_threads=2; cpu.num_threads is a deprecated "
        "alias of runconfig.num_threads: set only runconfig.num_threads")
