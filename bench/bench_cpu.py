"""tc against Hugging Face transformers' Trainer on the same recipe: speed, memory, MFU and F1.

One invocation runs, one after the other in child processes of this one: a matmul probe (the
machine's achievable FLOP/s), tc's side (exactly `tc run --task token_cls --backend cpu|cuda`) and
the peer (transformers' Trainer with the run_ner recipe). It prints a Markdown report (the format of
BENCHMARKS.md) and writes the raw numbers to bench/results/<stamp>.json.

    python bench/bench_cpu.py                 # throughput: 10 untimed + 150 timed steps, full test split
    python bench/bench_cpu.py --quick         # harness smoke run: a few steps, 256 test sentences
    python bench/bench_cpu.py --quality       # full run_ner recipe on both sides (3 epochs): test F1 (~20 min)
    python bench/bench_cpu.py --device cuda --model bert_base --seq 128 --precision bf16   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import (
    MODELS,
    ROOT,
    Recipe,
    child_env,
    forward_flops,
    machine_info,
    run_child,
    train_flops,
)

SIDES = ("tc", "peer")
SCRIPTS = {"tc": "tc_side.py", "peer": "peer_hf.py"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: 2 untimed + 6 timed steps, 256 test sentences")
    mode.add_argument("--quality", action="store_true", help="full recipes for F1 (long)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", choices=MODELS, default="minilm")
    p.add_argument("--seq", type=int, default=128, help="max sequence length (subwords)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="default: fp32 on cpu (this CPU family has no fast bf16), bf16 on cuda")
    p.add_argument("--padding", choices=("dynamic", "static"), default="dynamic", help="tc's runconfig.padding")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 150, quick 6)")
    p.add_argument("--untimed-steps", type=int, default=None, help="warm-up steps left out (default 10, quick 2)")
    p.add_argument("--test-sentences", type=int, default=None,
                   help="first N sentences of the evaluation splits (test; devel too in --quality)")
    p.add_argument("--epochs", type=float, default=3.0, help="--quality: epochs of both recipes")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="peak lr of both sides (run_ner's 5e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of both sides")
    p.add_argument("--select", action="store_true",
                   help="--quality: evaluate devel every epoch and test the best epoch (default: the last)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for both sides (default: all cores)")
    p.add_argument("--sides", default="tc,peer", help="comma list of tc, peer")
    p.add_argument("--repeats", type=int, default=1, help="run each side N times, alternating; best is reported")
    p.add_argument("--work-dir", type=Path, default=None, help="model dirs of both sides (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--json-out", type=Path, default=None, help="default: bench/results/<stamp>.json")
    return p.parse_args(argv)


def recipe_from(args: argparse.Namespace, work_dir: Path) -> Recipe:
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    recipe = Recipe(device=args.device, model=args.model, precision=precision, seq=args.seq,
                    batch_size=args.batch_size, padding=args.padding, work_dir=str(work_dir),
                    learning_rate=args.learning_rate, seed=args.seed, select=args.select)
    if args.threads:
        recipe.threads = args.threads
    if args.quick:
        recipe = replace(recipe, untimed_steps=2, timed_steps=6, test_sentences=256)
    if args.quality:
        recipe = replace(recipe, timed_steps=None, epochs=args.epochs)
    if args.steps is not None and not args.quality:
        recipe.timed_steps = args.steps
    if args.untimed_steps is not None:
        recipe.untimed_steps = args.untimed_steps
    if args.test_sentences is not None:
        recipe.test_sentences = args.test_sentences
    return recipe


# -- measuring -----------------------------------------------------------------------------------
def probe_matmul(recipe: Recipe, quick: bool) -> dict[str, Any]:
    shape = recipe.shape()
    dtype = recipe.precision if recipe.device == "cuda" else "fp32"
    args = ["--device", recipe.device, "--dtype", dtype, "--threads", str(recipe.threads),
            "--seconds", "2" if quick else "5", "--hidden", str(shape["hidden_size"]),
            "--filter", str(shape["intermediate_size"])]
    print(f"== matmul peak ({recipe.device}, {dtype}, {recipe.threads} threads)", file=sys.stderr, flush=True)
    return run_child("matmul_peak.py", args, env=child_env(recipe))


def run_side(side: str, recipe: Recipe, repeat: int) -> dict[str, Any]:
    side_recipe = replace(recipe, work_dir=str(Path(recipe.work_dir) / f"{side}-{repeat}"))
    Path(side_recipe.work_dir).mkdir(parents=True, exist_ok=True)
    print(f"== {side} (repeat {repeat + 1})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = run_child(SCRIPTS[side], [side_recipe.to_json()], env=child_env(recipe))
    result["process_seconds"] = time.perf_counter() - started
    return result


def derive(result: dict[str, Any], recipe: Recipe, peak: float) -> dict[str, Any]:
    """Rates, FLOP/s and MFU from a side's raw counts (the same formula for both sides)."""
    shape, classes = recipe.shape(), int(result["classes"])
    train, pred = result["train"], result["predict"]
    t_sec, p_sec = max(train["seconds"], 1e-9), max(pred["seconds"], 1e-9)
    useful = train_flops(shape, classes, train["tokens"], train["tokens_sq"]) / t_sec
    executed = train_flops(shape, classes, train["padded"], train["padded_sq"]) / t_sec
    p_useful = forward_flops(shape, classes, pred["tokens"], pred["tokens_sq"]) / p_sec
    return {
        "train_sentences_per_s": train["rows"] / t_sec,
        "train_sentences_per_cpu_s": train["rows"] / max(train.get("cpu_seconds", 0.0), 1e-9),
        "train_tokens_per_s": train["tokens"] / t_sec,
        "train_padding_efficiency": train["tokens"] / max(train["padded"], 1),
        "train_tflops": useful / 1e12,
        "train_tflops_executed": executed / 1e12,
        "train_mfu": useful / peak,
        "train_seconds": train["seconds"],
        "setup_seconds": result.get("setup_seconds"),
        "train_steps_timed": train["steps"],
        "train_wall_seconds": train["wall_seconds"],
        "predict_sentences_per_s": pred["sentences"] / p_sec,
        "predict_sentences_per_cpu_s": pred["sentences"] / max(pred.get("cpu_seconds", 0.0), 1e-9),
        "predict_tokens_per_s": pred["tokens"] / p_sec,
        "predict_padding_efficiency": pred["tokens"] / max(pred["padded"], 1),
        "predict_tflops": p_useful / 1e12,
        "predict_mfu": p_useful / peak,
        "peak_rss_mib": result["peak_rss_mib"],
        "gpu_peak_mib": result.get("gpu_peak_mib"),
        "f1": result["f1"],
    }


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the highest train throughput (noise on a shared machine only slows a run down)."""
    best = dict(max(runs, key=lambda r: r["train_sentences_per_s"]))
    if len(runs) > 1:
        speeds = [r["train_sentences_per_s"] for r in runs]
        best["train_sentences_per_s_median"] = statistics.median(speeds)
        best["train_sentences_per_s_range"] = [min(speeds), max(speeds)]
    return best


# -- reporting -----------------------------------------------------------------------------------
ROWS: list[tuple[str, str, str, bool]] = [
    # (label, key, format, ratio is meaningful)
    ("train sentences/s", "train_sentences_per_s", "{:.2f}", True),
    ("train sentences per CPU-second (all threads)", "train_sentences_per_cpu_s", "{:.2f}", True),
    ("train real tokens/s", "train_tokens_per_s", "{:.0f}", True),
    ("train padding efficiency (real/padded tokens)", "train_padding_efficiency", "{:.1%}", False),
    ("predict sentences/s (test)", "predict_sentences_per_s", "{:.1f}", True),
    ("predict sentences per CPU-second", "predict_sentences_per_cpu_s", "{:.1f}", True),
    ("predict padding efficiency", "predict_padding_efficiency", "{:.1%}", False),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}", True),
    ("GPU peak allocated MiB", "gpu_peak_mib", "{:.0f}", True),
    ("train achieved TFLOP/s (real tokens)", "train_tflops", "{:.4f}", True),
    ("train executed TFLOP/s (incl. padding)", "train_tflops_executed", "{:.4f}", True),
    ("train MFU (vs measured matmul peak)", "train_mfu", "{:.1%}", True),
    ("predict MFU", "predict_mfu", "{:.1%}", True),
    ("test F1 (seqeval, every word)", "f1", "{:.2f}", False),
    ("setup seconds (data, model, optimizer; after imports)", "setup_seconds", "{:.1f}", True),
    ("timed train seconds", "train_seconds", "{:.1f}", False),
    ("train wall seconds (all steps)", "train_wall_seconds", "{:.1f}", False),
]


def fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def markdown(report: dict[str, Any]) -> str:
    """The report as BENCHMARKS.md shows it: header facts, then metric | tc | peer | tc/peer."""
    m, r, peak = report["machine"], report["recipe"], report["matmul"]
    sides = report["sides"]
    lines = [
        f"### {report['title']}",
        "",
        f"- command: `{report['command']}`",
        f"- date: {m['date']}; machine: {m['cpu']} ({m['cpu_flags']}), nproc {m['nproc']}, "
        f"{m['memory_gib']} GiB" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; load average {m['load_avg_1m']} at start, {m.get('load_avg_1m_end', '-')} at end",
        f"- software: python {m['python']}, torch {m['torch']}, transformers {m['transformers']}",
        f"- recipe: {r['model']} on {Path(r['data_dir']).name}, {r['device']} {r['precision']}, "
        f"{r['threads']} threads, batch {r['batch_size']}, max len {r['seq']}, lr {r['learning_rate']}, "
        f"warmup {r['warmup_ratio']:.0%}, weight decay {r['weight_decay']}, clip {r['max_grad_norm']}, "
        + (f"seed {r['seed']}, {r['epochs']:g} epochs, "
           + ("best devel epoch tested" if r.get("select") else "last weights tested")
           if r["timed_steps"] is None
           else f"{r['untimed_steps']} untimed + {r['timed_steps']} timed steps")
        + (f", first {r['test_sentences']} test sentences" if r["test_sentences"] else ", full test split"),
        f"- matmul peak ({peak['dtype']}, {peak['square']['shape'][0]}^3, {peak['threads']} threads): "
        f"{peak['square']['best'] / 1e12:.4f} TFLOP/s best burst (probes before/after the sides: "
        + ", ".join(f"{x / 1e12:.4f}" for x in peak.get("probes_best", [])) + "); "
        "model-shaped GEMMs: " + ", ".join(
            f"{'x'.join(map(str, g['shape']))} {g['best'] / 1e12:.4f}" for g in peak["model_shaped"]),
        "",
        "| metric | tc | peer (HF Trainer) | tc / peer |",
        "| --- | ---: | ---: | ---: |",
    ]
    tc, peer = sides.get("tc", {}), sides.get("peer", {})
    for label, key, pattern, ratio in ROWS:
        a, b = tc.get(key), peer.get(key)
        if a is None and b is None:
            continue
        rel = f"{a / b:.2f}x" if ratio and a is not None and b else "-"
        lines.append(f"| {label} | {fmt(a, pattern)} | {fmt(b, pattern)} | {rel} |")
    if "tc" in sides:
        lines += ["", f"tc command: `{sides['tc']['command']}`"]
    return "\n".join(lines) + "\n"


def title(args: argparse.Namespace) -> str:
    kind = "quality (full recipe)" if args.quality else "harness smoke run (--quick)" if args.quick else "throughput"
    return f"{args.device} / {args.model} / {kind}"


def check_device(recipe: Recipe, machine: dict[str, Any]) -> None:
    """Fail before any child starts when the device is missing; warn about a bf16 run on a CPU
    without bf16 instructions (its matmuls run some 50x slower than fp32 there)."""
    if recipe.device == "cuda" and "gpu" not in machine:
        raise SystemExit("--device cuda: torch sees no CUDA device on this machine")
    if recipe.device == "cpu" and recipe.precision != "fp32" and not {"avx512_bf16", "amx_bf16"} & set(
            machine["cpu_flags"].split()):
        print(f"warning: {recipe.precision} on a CPU without avx512_bf16/amx_bf16: expect it to be far slower "
              "than fp32", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - set(SIDES)
    if unknown:
        raise SystemExit(f"--sides: unknown {sorted(unknown)} (valid: {', '.join(SIDES)})")
    machine = machine_info()
    check_device(recipe_from(args, Path()), machine)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="tc-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    recipe = recipe_from(args, work_dir)
    try:
        probes = [probe_matmul(recipe, args.quick)]
        raw: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for side in order:
                raw[side].append(run_side(side, recipe, repeat))
        probes.append(probe_matmul(recipe, args.quick))
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    machine["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    peak = max(probes, key=lambda p: p["square"]["best"])  # before or after the sides: the less disturbed
    peak["probes_best"] = [p["square"]["best"] for p in probes]
    peak_flops = peak["square"]["best"]
    derived = {s: best_of([derive(r, recipe, peak_flops) for r in runs]) for s, runs in raw.items()}
    for s, runs in raw.items():
        derived[s]["command"] = runs[0]["command"]
        derived[s]["device"] = runs[0]["device"]
    report = {"title": title(args), "command": " ".join(["python", "bench/bench_cpu.py", *(argv or sys.argv[1:])]),
              "machine": machine, "recipe": json.loads(recipe.to_json()), "matmul": peak, "sides": derived,
              "raw": raw}
    out = args.json_out or ROOT / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    print(markdown(report))
    print(f"raw results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
