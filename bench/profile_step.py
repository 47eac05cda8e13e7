"""Where a training step's time goes: tc's EagerRunner step against the HF model's step, same batch.

Both sides get the very same tensors (a real length-bucketed batch from tc's own BatchPlan), so this
isolates kernels and framework overhead from the padding difference that bench_cpu.py measures. Each
variant is timed per phase (forward, backward, clip, optimizer, zero_grad), interleaved with the
others and reported as the minimum over repeats (a shared machine only adds time), then profiled with
torch.profiler for an op table.

    python bench/profile_step.py [--variants tc,hf,...] [--reps 6] [--rounds 2] [--table 25]
                                 [--batch-index 0] [--threads 1] [--clock cpu|wall]

Variants (`tc-*` are candidate changes to tc, measured here without touching tc/):
    tc               tc's model and EagerRunner phases as shipped (fused AdamW, clip, set_to_none)
    hf               transformers BertForTokenClassification, the HF Trainer's step
    tc-noattndrop    tc with attention-probability dropout 0 (lets CPU SDPA take its flash kernel)
    tc-int64         input ids as int64 instead of tc's int32 (embedding backward path)
    tc-foreach       AdamW with foreach=True instead of fused=True
    tc-compile       torch.compile(model, dynamic=True) (compile time reported separately)
    tc-2thread       tc with two intra-op threads (with --threads 1 for the others; use --clock wall,
                     CPU time adds the threads up)
    tc-manualattn    attention written out (matmul, +bias, softmax, dropout, matmul) instead of SDPA
    tc-fastdrop      tc-manualattn plus dropout from a uniform draw and a bool mask (see bernoulli_mask)

On a shared machine wall time swings by 2x; the default clock is this process's CPU time with one
thread (it only counts while the step runs, not while a neighbour does), which is what A/B needs.
The op table is the minimum, per op, over ``--rounds`` profiled steps of each variant, interleaved.
"""

from __future__ import annotations

import argparse
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from common import DATA_DIR, minilm_dir

PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    optimizer: torch.optim.Optimizer
    batch: dict[str, torch.Tensor]
    threads: int | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})


def tc_task(extra: list[str]) -> Any:
    from tc.core.jobs import open_job

    job = open_job("token_cls", "cpu", None, [f"train_input.data_dir={DATA_DIR}", "runconfig.model_dir=/tmp/tc-profile",
                                               *extra])
    return job.task, job.cfg


def real_batch(index: int) -> dict[str, torch.Tensor]:
    """Global train batch ``index`` of tc's own plan (seed 0, bucketed, dynamic padding)."""
    from tc.core.sampling import BatchPlan

    task, cfg = tc_task([])
    data = task.dataset("train")
    plan = BatchPlan(data, cfg.train_input.batch_size, train=True, seed=0)
    rows = plan.epoch_batches(0)[index]
    return data.collate(rows)


def tc_optimizer(model: torch.nn.Module, lr: float, fused: bool) -> torch.optim.Optimizer:
    """As EagerRunner builds it: tc's parameter groups, AdamW, fused unless asked otherwise."""
    from tc.core.interfaces import OptimSpec

    spec = OptimSpec("adamw", lr, 0.01, (0.9, 0.999), 1e-8, 0.9, 10, 100, "linear", 1.0)
    extra: dict[str, Any] = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(spec.param_groups(model), lr=lr, **extra)


def manual_attention(self: Any, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """tc's SelfAttention written out: CPU SDPA with dropout falls back to its math path anyway,
    which adds a "safe softmax" (isneginf, all, where) and scales q and k separately."""
    b, t, h = x.shape
    d = h // self.num_heads
    q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    scores = torch.matmul(q * d**-0.5, k.transpose(-1, -2))  # (B, N, T, T)
    if bias is not None:
        scores = scores + bias
    probs = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
    return self.proj(torch.matmul(probs, v).transpose(1, 2).reshape(b, t, h))


def bernoulli_mask(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with ``rand_like(x) >= p`` as the keep mask: on CPU ``bernoulli_`` (what
    F.dropout draws with) costs more than a uniform draw plus a compare, and autograd keeps a 1-byte
    bool mask instead of F.dropout's 4-byte float one."""
    if not training or p == 0.0:
        return x
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class FastDropout(torch.nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_mask(x, self.p, self.training)


def fast_attention(self: Any, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    b, t, h = x.shape
    d = h // self.num_heads
    q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    scores = torch.matmul(q * d**-0.5, k.transpose(-1, -2))
    if bias is not None:
        scores = scores + bias
    probs = bernoulli_mask(scores.softmax(dim=-1), self.dropout, self.training)
    return self.proj(torch.matmul(probs, v).transpose(1, 2).reshape(b, t, h))


def make_tc(name: str, batch: dict[str, torch.Tensor]) -> Variant:
    extra = ["model.attention_dropout_rate=0"] if name == "tc-noattndrop" else []
    task, _ = tc_task(extra)
    model = task.build_model().train()
    if name in ("tc-manualattn", "tc-fastdrop"):
        attention = manual_attention if name == "tc-manualattn" else fast_attention
        for layer in model.encoder.layers:
            layer.attn.forward = types.MethodType(attention, layer.attn)
    if name == "tc-fastdrop":
        for module in list(model.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.Dropout):
                    setattr(module, child_name, FastDropout(child.p))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    if name == "tc-int64":
        inputs = {k: v.long() for k, v in inputs.items()}
    forward = torch.compile(model, dynamic=True) if name == "tc-compile" else model
    threads = 2 if name == "tc-2thread" else None
    return Variant(name, model, lambda b: forward(b)[1], tc_optimizer(model, 1e-4, name != "tc-foreach"), inputs,
                   threads)


def make_hf(batch: dict[str, torch.Tensor]) -> Variant:
    """transformers' model and the Trainer's step: AdamW fused (its default optim), no decay on
    biases and LayerNorm weights, clip 1.0."""
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(str(minilm_dir()), num_labels=3).train()
    inputs = {k: batch[k].long() for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-4, fused=True)
    return Variant("hf", model, lambda b: model(**b).loss, optimizer, inputs)


def step(v: Variant, clock: Callable[[], float], record: bool) -> None:
    """One training step, phase by phase, as EagerRunner.train_step (and the HF Trainer) run it."""
    default_threads = torch.get_num_threads()
    if v.threads:
        torch.set_num_threads(v.threads)
    marks = [clock()]
    loss = v.forward(v.batch)
    marks.append(clock())
    loss.backward()
    marks.append(clock())
    torch.nn.utils.clip_grad_norm_(v.model.parameters(), 1.0)
    marks.append(clock())
    v.optimizer.step()
    marks.append(clock())
    v.optimizer.zero_grad(set_to_none=True)
    marks.append(clock())
    torch.set_num_threads(default_threads)
    if record:
        for phase, a, b in zip(PHASES, marks, marks[1:], strict=False):
            v.times[phase].append(b - a)


def op_times(v: Variant, clock: Callable[[], float]) -> dict[str, tuple[float, int]]:
    """Self time (ms) and calls of every op over one profiled step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(v, clock, record=False)
    return {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}


def op_table(variants: list[Variant], clock: Callable[[], float], rounds: int, rows: int) -> str:
    """Per op, the minimum self time over ``rounds`` interleaved profiled steps, for every variant."""
    best: dict[str, dict[str, tuple[float, int]]] = {v.name: {} for v in variants}
    for _ in range(rounds):
        for v in variants:
            for op, (ms, calls) in op_times(v, clock).items():
                old = best[v.name].get(op)
                best[v.name][op] = (ms, calls) if old is None or ms < old[0] else old
    first = variants[0].name
    ops = sorted({op for table in best.values() for op in table}, key=lambda op: -best[first].get(op, (0.0, 0))[0])
    ops = [op for op in ops if not op.startswith(("ProfilerStep", "Optimizer.", "autograd::"))][:rows]
    lines = [f"{'op':<40}" + "".join(f"{v.name + ' ms':>16}{'calls':>7}" for v in variants)]
    for op in ops:
        cells = "".join(f"{best[v.name].get(op, (0.0, 0))[0]:>16.1f}{best[v.name].get(op, (0.0, 0))[1]:>7}"
                        for v in variants)
        lines.append(f"{op[:40]:<40}{cells}")
    totals = "".join(f"{sum(ms for ms, _ in best[v.name].values()):>16.1f}{'':>7}" for v in variants)
    lines.append(f"{'sum of per-op minima (all ops)':<40}{totals}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--variants", default="tc,hf")
    parser.add_argument("--rounds", type=int, default=2, help="profiled steps per variant for the op table (0: none)")
    parser.add_argument("--table", type=int, default=25, help="rows of the op table")
    parser.add_argument("--batch-index", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    batch = real_batch(args.batch_index)
    mask = batch["attention_mask"]
    print(f"batch: {tuple(mask.shape)}, real tokens {int(mask.sum())}, padding "
          f"{1 - float(mask.float().mean()):.1%}, threads {torch.get_num_threads()}, clock {args.clock}")
    variants = []
    for name in args.variants.split(","):
        started = time.perf_counter()
        v = make_hf(batch) if name == "hf" else make_tc(name, batch)
        step(v, clock, record=False)  # warm-up (and compilation for tc-compile)
        step(v, clock, record=False)
        print(f"{name}: built and warmed up in {time.perf_counter() - started:.1f} s wall")
        variants.append(v)
    for _ in range(args.reps):
        for v in variants:
            step(v, clock, record=True)
    print(f"\nmin over {args.reps} interleaved reps, ms ({args.clock} time)")
    print(f"{'variant':<16}" + "".join(f"{p:>11}" for p in PHASES) + f"{'total':>11}{'median':>11}")
    for v in variants:
        mins = [min(v.times[p]) * 1e3 for p in PHASES]
        totals = sorted(sum(v.times[p][i] for p in PHASES) * 1e3 for i in range(args.reps))
        print(f"{v.name:<16}" + "".join(f"{m:>11.1f}" for m in mins)
              + f"{totals[0]:>11.1f}{totals[len(totals) // 2]:>11.1f}")
    if args.rounds:
        print(f"\nop self time, min over {args.rounds} profiled steps per variant (profiler wall time)")
        print(op_table(variants, time.perf_counter, args.rounds, args.table))


if __name__ == "__main__":
    main()
