"""tc's side of the benchmark: exactly what ``tc run --task token_cls --backend cpu|cuda`` does.

It goes through the same calls as the CLI (``tc.core.jobs.open_job`` with ``--set`` overrides:
the registered backend and task, ``tc.core.trainer.run`` in ``train_and_eval`` mode). The only
addition is a clock around the runner's ``train_step`` (a timestamp and the batch's token counts;
no change to what the step does). Prediction speed is the test pass of the final evaluation, which tc
times itself (``eval_seconds``: batches, forward passes and argmax, not the metric computation).

Usage (normally started by bench_cpu.py): python bench/tc_side.py '<recipe json>'
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from common import Recipe, StepClock, Stopwatch, emit, gpu_peak_mib, minilm_dir, peak_rss_mib


def overrides(recipe: Recipe, model_dir: Path) -> list[str]:
    """The ``--set`` assignments of the recipe (most equal tc's defaults; stated so nothing drifts)."""
    sets = [
        f"runconfig.model_dir={model_dir}",
        f"train_input.data_dir={recipe.data_dir}",
        f"train_input.batch_size={recipe.batch_size}",
        f"train_input.max_sequence_length={recipe.seq}",
        "train_input.label_all_subwords=false",  # the peer's run_ner alignment: first pieces carry labels
        "model.decoding=argmax",  # and its reading: each word's argmax
        f"eval_input.max_sequence_length={recipe.seq}",
        f"eval_input.batch_size={recipe.eval_batch_size}",
        f"optimizer.learning_rate={recipe.learning_rate}",
        f"optimizer.weight_decay={recipe.weight_decay}",
        f"optimizer.warmup_ratio={recipe.warmup_ratio}",
        f"optimizer.max_gradient_norm={recipe.max_grad_norm}",
        f"runconfig.seed={recipe.seed}",
        f"runconfig.precision={recipe.precision}",
        f"runconfig.padding={recipe.padding}",
    ]
    if recipe.device == "cpu":
        sets.append(f"runconfig.num_threads={recipe.threads}")
    if recipe.quality:
        sets.append(f"runconfig.num_epochs={recipe.epochs}")
        if not recipe.selects:
            sets.append("runconfig.selection_split=null")
    else:  # throughput: a fixed number of steps, no devel evaluation in between
        sets += [f"runconfig.max_steps={recipe.total_steps}", "runconfig.selection_split=null"]
    if recipe.test_sentences:
        sets.append(f"eval_input.max_sentences={recipe.test_sentences}")
    if recipe.model == "bert_base":
        sets += ["model.preset=bert_base", "model.pretrained=null",
                 f"train_input.vocab_file={minilm_dir() / 'vocab.txt'}", "train_input.do_lower=true"]
    return sets


def cli_command(recipe: Recipe, sets: list[str]) -> str:
    """The equivalent command line, for the report."""
    backend = "cuda" if recipe.device == "cuda" else "cpu"
    parts = ["tc", "run", "--task", "token_cls", "--backend", backend, "-q"]
    for assignment in sets:
        parts += ["--set", assignment]
    return shlex.join(parts)


def clock_runner(backend: Any, clock: StepClock) -> None:
    """Wrap ``backend.prepare`` so the runner it returns reports each train step to ``clock``."""
    prepare = backend.prepare

    def timed_prepare(model: Any, spec: Any) -> Any:
        runner = prepare(model, spec)
        step = runner.train_step

        def train_step(micro_batches: list[dict[str, Any]]) -> Any:
            for batch in micro_batches:
                clock.batch(batch["attention_mask"])
            result = step(micro_batches)  # returns a host float: device work is finished
            clock.mark()
            return result

        runner.train_step = train_step
        clock.restart()
        return runner

    backend.prepare = timed_prepare


def clock_predictions(passes: list[Stopwatch]) -> None:
    """Also take CPU time of each prediction pass (tc's own eval_seconds is wall time only).

    ``tc.core.evaluation.evaluate`` looks ``predict_rows`` up in its module at call time, so wrapping
    the module attribute times exactly the span eval_seconds covers."""
    from tc.core import evaluation

    predict_rows = evaluation.predict_rows

    def timed(*args: Any, **kwargs: Any) -> Any:
        with Stopwatch() as sw:
            out = predict_rows(*args, **kwargs)
        passes.append(sw)
        return out

    evaluation.predict_rows = timed


def predict_stats(dataset: Any, batch_size: int, pad_to: int | None) -> dict[str, int]:
    """Token counts of tc's prediction pass (its own batch plan: longest rows first)."""
    from tc.core.sampling import BatchPlan

    plan = BatchPlan(dataset, batch_size, train=False, pad_to=pad_to)
    out = {"rows": 0, "tokens": 0, "tokens_sq": 0, "padded": 0, "padded_sq": 0}
    for rows in plan.epoch_batches(0):
        lengths = [int(n) for n in dataset.lengths[rows]]
        width = pad_to or max(lengths)
        out["rows"] += len(lengths)
        out["tokens"] += sum(lengths)
        out["tokens_sq"] += sum(n * n for n in lengths)
        out["padded"] += len(lengths) * width
        out["padded_sq"] += len(lengths) * width * width
    return out


def main() -> None:
    recipe = Recipe.from_json(sys.argv[1])
    from rich.console import Console

    from tc.core.errors import BackendUnavailable
    from tc.core.jobs import open_job
    from tc.core.reporting import Reporter
    from tc.core.trainer import run

    began = time.perf_counter()
    sets = overrides(recipe, Path(recipe.work_dir) / "tc")
    print(f"[tc] {cli_command(recipe, sets)}", file=sys.stderr, flush=True)
    job = open_job("token_cls", "cuda" if recipe.device == "cuda" else "cpu", None, sets,
                   reporter=Reporter(console=Console(stderr=True), quiet=True))
    try:
        job.backend.require_available()
    except BackendUnavailable as exc:
        raise SystemExit(f"[tc] {exc}") from None
    task, backend, cfg = job.task, job.backend, job.cfg
    clock = StepClock(untimed=recipe.untimed_steps)
    clock_runner(backend, clock)
    passes: list[Stopwatch] = []
    clock_predictions(passes)
    metrics = run(job, "train_and_eval")
    assert metrics is not None
    test = task.dataset(cfg.eval_input.split or "test")
    emit({
        "side": "tc",
        "command": cli_command(recipe, sets),
        "device": backend.device_description(),
        "classes": len(task.label_map.labels),
        "train": clock.summary(),
        "predict": {"seconds": float(metrics["eval_seconds"]), "cpu_seconds": passes[-1].cpu_seconds,
                    "sentences": int(metrics["sentences"]),
                    **predict_stats(test, cfg.eval_input.batch_size, job.pad_to)},
        "setup_seconds": clock.start - began,
        "f1": float(metrics["f1"]),
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu_peak_mib(),
    })


if __name__ == "__main__":
    main()
