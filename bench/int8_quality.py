"""Devel F1 and predict throughput of tc fp32, tc on onnxruntime fp32 and int8, and the peer, in one run.

    python bench/int8_quality.py MODEL_DIR                    # devel split of the shipped BC5CDR-chem
    python bench/int8_quality.py MODEL_DIR --split test --threads 2 --no-peer

F1 is entity-level (seqeval, as ``tc run`` reports it) from ``predict_tokens`` on the split's words, so
every precision is scored on exactly the same words and windows; the issue's bar is an int8 drop of at
most 0.5 F1 on the shipped BC5CDR-chem model. Throughput is sentences/s of ``predict`` on raw sentence
text (words joined by spaces), after one untimed pass.

The peer is transformers' token-classification pipeline on the same model exported with
``tc export --format hf`` (torch, ``aggregation_strategy="first"``: word-level, first subword), batch 32
and the same threads; its F1 maps its character spans over the joined text back to words.
A Markdown table goes to stdout, raw numbers to ``bench/results/int8_<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "BC5CDR-chem-IOB"


def tc_row(model_dir: Path, precision: str, words: list[list[str]], gold: list[list[str]], texts: list[str],
           threads: int | None, batch_size: int) -> dict[str, Any]:
    from tc.tasks.token_cls.metrics import entity_scores
    from tc.tasks.token_cls.onnx_export import load_predictor

    overrides = [f"runconfig.num_threads={threads}"] if threads else []
    begin = time.perf_counter()
    with load_predictor(model_dir, precision, batch_size=batch_size, overrides=overrides) as predictor:
        load_s = time.perf_counter() - begin
        scores = entity_scores(gold, predictor.predict_tokens(words))
        predictor.predict(texts[:64])  # untimed warm-up
        begin = time.perf_counter()
        predictor.predict(texts)
        seconds = time.perf_counter() - begin
    return {"side": f"tc {precision}", "f1": scores["f1"], "precision": scores["precision"],
            "recall": scores["recall"], "sentences_per_s": round(len(texts) / seconds, 1),
            "load_s": round(load_s, 2)}


def peer_labels(words: list[str], entities: list[dict[str, Any]]) -> list[str]:
    """Word-level IOB2 labels from the pipeline's character spans over ``" ".join(words)``."""
    starts, offset = [], 0
    for word in words:
        starts.append(offset)
        offset += len(word) + 1
    labels = ["O"] * len(words)
    for entity in entities:
        inside = [i for i, begin in enumerate(starts) if entity["start"] <= begin < entity["end"]]
        for n, i in enumerate(inside):
            labels[i] = ("B-" if n == 0 else "I-") + entity["entity_group"]
    return labels


def peer_row(model_dir: Path, words: list[list[str]], gold: list[list[str]], texts: list[str], threads: int | None,
             batch_size: int) -> dict[str, Any]:
    from common import run_pipeline_peer

    found, seconds = run_pipeline_peer(model_dir, texts, threads, batch_size)
    from tc.tasks.token_cls.metrics import entity_scores

    scores = entity_scores(gold, [peer_labels(w, f) for w, f in zip(words, found, strict=True)])
    return {"side": "peer: transformers pipeline (torch, first)", "f1": scores["f1"],
            "precision": scores["precision"], "recall": scores["recall"],
            "sentences_per_s": round(len(texts) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--split", default="devel")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-sentences", type=int, default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the transformers pipeline row")
    args = parser.parse_args()

    from tc.tasks.token_cls.readers import load_split

    sentences = load_split(args.data_dir, args.split)[: args.max_sentences]
    words = [list(s.words) for s in sentences]
    gold = [list(s.labels or ()) for s in sentences]
    texts = [" ".join(w) for w in words]
    rows = [tc_row(args.model_dir, p, words, gold, texts, args.threads, args.batch_size)
            for p in ("fp32", "onnx", "int8")]
    if not args.no_peer:
        rows.append(peer_row(args.model_dir, words, gold, texts, args.threads, args.batch_size))
    base = rows[0]["f1"]
    print(f"{args.split}: {len(sentences)} sentences of {args.data_dir}, model {args.model_dir}\n")
    print("| side | F1 | ΔF1 vs fp32 | sentences/s |\n|---|---|---|---|")
    for r in rows:
        f1 = "-" if r["f1"] is None else f"{r['f1']:.2f}"
        delta = "-" if r["f1"] is None else f"{r['f1'] - base:+.2f}"
        print(f"| {r['side']} | {f1} | {delta} | {r['sentences_per_s']} |")
    drop = base - rows[2]["f1"]
    print(f"\nint8 F1 drop: {drop:.2f} ({'within' if drop <= 0.5 else 'OVER'} the 0.5 bar)")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"int8_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"model_dir": str(args.model_dir), "split": args.split, "rows": rows}, indent=2) + "\n")
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
