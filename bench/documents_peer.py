"""Mention-level F1 per type on documents: tc's predictor and the transformers pipeline, same model, one run.

    python bench/documents_peer.py MODEL_DIR                    # CDR test documents (data/BC5CDR-PubTator)
    python bench/documents_peer.py MODEL_DIR --split devel --threads 2 --precision int8

Both sides tag the same sentences of the same documents (``documents.tagging.sentence_pieces``: the
sentences ``tc predict`` cuts each PubTator passage into), and both are scored by the same exact-offset
mention scorer ``tc run`` reports (``documents.mention_eval.mention_scores``, the BioCreative CDR measure:
a mention counts when its start, end and type equal a gold mention's). tc runs ``Predictor.predict``
(``tc predict``'s path) at ``--precision``; the peer is transformers' token-classification pipeline on
the same model exported with ``tc export --format hf`` (torch, ``aggregation_strategy="first"``, the
aggregation tc's word-level prediction equals), batch 32, the same threads. Its character spans are
relative to each sentence and move by the sentence's offset exactly as tc's do.

A Markdown table goes to stdout, raw numbers to ``bench/results/documents_<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "BC5CDR-PubTator"


def tc_side(model_dir: Path, precision: str, texts: list[str], threads: int | None,
            batch_size: int) -> tuple[list[list[dict[str, Any]]], float]:
    from tc.tasks.token_cls.onnx_export import load_predictor

    overrides = [f"runconfig.num_threads={threads}"] if threads else []
    with load_predictor(model_dir, precision, batch_size=batch_size, overrides=overrides) as predictor:
        predictor.predict(texts[:64])  # untimed warm-up
        begin = time.perf_counter()
        found = predictor.predict(texts)
        return found, time.perf_counter() - begin


def peer_side(model_dir: Path, texts: list[str], threads: int | None,
              batch_size: int) -> tuple[list[list[dict[str, Any]]], float]:
    from common import run_pipeline_peer

    raw, seconds = run_pipeline_peer(model_dir, texts, threads, batch_size)
    found = [[{"start": e["start"], "end": e["end"], "type": e["entity_group"], "score": float(e["score"])}
              for e in entities] for entities in raw]
    return found, seconds


def row(side: str, scores: dict[str, Any], seconds: float, docs: int, sentences: int) -> dict[str, Any]:
    per_type = {t: {k: v[k] for k in ("precision", "recall", "f1")} for t, v in scores["per_type"].items()}
    return {"side": side, "micro": {k: scores[k] for k in ("precision", "recall", "f1")}, "per_type": per_type,
            "errors": scores["errors"], "documents_per_s": round(docs / seconds, 2),
            "sentences_per_s": round(sentences / seconds, 1), "seconds": round(seconds, 2)}


def table(rows: Sequence[dict[str, Any]], types: Sequence[str]) -> str:
    head = "| side | " + " | ".join(f"{t} P / R / F1" for t in types) + " | micro F1 | docs/s |"
    lines = [head, "|" + "---|" * (len(types) + 3)]
    for r in rows:
        cells = [" / ".join(f"{r['per_type'][t][k]:.2f}" for k in ("precision", "recall", "f1"))
                 if t in r["per_type"] else "-" for t in types]
        lines.append(f"| {r['side']} | " + " | ".join(cells) + f" | {r['micro']['f1']:.2f} | {r['documents_per_s']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--precision", default="fp32", help="tc's side: fp32, onnx or int8")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-documents", type=int, default=None, help="only the first N documents (smoke runs)")
    parser.add_argument("--no-peer", action="store_true", help="skip the transformers pipeline row")
    args = parser.parse_args()

    from tc.tasks.token_cls.documents.formats import find_document_split, read_documents
    from tc.tasks.token_cls.documents.mention_eval import mention_scores
    from tc.tasks.token_cls.documents.tagging import attach, sentence_pieces

    path = find_document_split(args.data_dir, [args.split])
    if path is None:
        raise SystemExit(f"{args.data_dir}: no {args.split} document file")
    gold = read_documents(path)[: args.max_documents]
    pieces = sentence_pieces(gold)
    texts = [text for _, _, text in pieces]
    sides = [(f"tc {args.precision}", lambda: tc_side(args.model_dir, args.precision, texts, args.threads,
                                                       args.batch_size))]
    if not args.no_peer:
        sides.append(("peer: transformers pipeline (torch, first)",
                      lambda: peer_side(args.model_dir, texts, args.threads, args.batch_size)))
    rows = []
    for name, run in sides:
        found, seconds = run()
        scores = mention_scores(gold, attach(gold, pieces, found))
        rows.append(row(name, scores, seconds, len(gold), len(texts)))
    types = sorted({t for r in rows for t in r["per_type"]})
    print(f"{args.split}: {len(gold)} documents, {len(texts)} sentences of {path}; model {args.model_dir}\n")
    print(table(rows, types))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"documents_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"model_dir": str(args.model_dir), "split": args.split, "file": str(path),
                               "rows": rows}, indent=2) + "\n")
    print(f"\nraw: {out}")


if __name__ == "__main__":
    main()
