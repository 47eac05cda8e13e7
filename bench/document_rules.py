"""Document rules, measured: mention F1 per type with each set of rules, on one model's predictions.

    python bench/document_rules.py MODEL_DIR --split devel            # CDR PubTator documents
    python bench/document_rules.py MODEL_DIR --split test --iob data/BC5CDR-chem-IOB   # -DOCSTART- TSV

The model tags each split once (``tc predict``'s path: ``documents.tagging`` on the PubTator
documents, or ``Predictor.predict_tokens`` with the TSV file's documents), and every rule set then
revises the same predictions (``documents.rules.apply_rules`` / ``word_rules.revise_labels``), so rows
differ only by the rules. PubTator rows are exact-offset mention scores (``mention_scores``, the
BioCreative measure) per type with nervaluate's error classes; TSV rows are seqeval entity F1, what
``tc run`` reports for ``make demo``. Each row's time is the rules' own (the model's is given once).
Raw numbers go to ``bench/results/rules_<stamp>.json``; choose defaults on devel, never on test.
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
SETS = {"none": (), "a": ("abbreviation",), "d": ("no_long_form",), "b": ("long_form",),
        "a+d": ("abbreviation", "no_long_form"), "a+b": ("abbreviation", "long_form"),
        "a+d+b": ("abbreviation", "no_long_form", "long_form"), "c": ("consistency",),
        "a+d+c": ("abbreviation", "no_long_form", "consistency")}


def pubtator_rows(model_dir: Path, split: str, threads: int) -> tuple[list[dict[str, Any]], float]:
    from tc.tasks.token_cls.documents import mention_scores, read_documents
    from tc.tasks.token_cls.documents.rules import apply_rules
    from tc.tasks.token_cls.documents.tagging import tag_documents
    from tc.tasks.token_cls.onnx_export import load_predictor

    gold = read_documents(ROOT / "data" / "BC5CDR-PubTator" / f"{split}.pubtator")
    with load_predictor(model_dir, overrides=[f"runconfig.num_threads={threads}"], document_rules=()) as predictor:
        begin = time.perf_counter()
        raw = tag_documents(predictor.predict, gold)
        model_seconds = time.perf_counter() - begin
    rows = []
    for name, rules in SETS.items():
        begin = time.perf_counter()
        revised = [apply_rules(d, rules) for d in raw]
        seconds = time.perf_counter() - begin
        scores = mention_scores(gold, revised)
        changed = sum(1 for d in revised for m in d.mentions if m.rule is not None)
        rows.append({"rules": name, "micro": scores["f1"],
                     **{t: v["f1"] for t, v in scores["per_type"].items()},
                     "errors": {k: scores["errors"][k] for k in ("missed", "spurious", "wrong_type",
                                                                 "wrong_boundary", "wrong_type_and_boundary")},
                     "changed_mentions": changed, "seconds": round(seconds, 3)})
    return rows, model_seconds


def iob_rows(model_dir: Path, data_dir: Path, split: str, threads: int) -> tuple[list[dict[str, Any]], float]:
    from tc.tasks.token_cls.metrics import entity_scores
    from tc.tasks.token_cls.onnx_export import load_predictor
    from tc.tasks.token_cls.readers import read_conll
    from tc.tasks.token_cls.word_rules import revise_labels

    sentences = read_conll(data_dir / f"{split}.tsv")
    words = [list(s.words) for s in sentences]
    gold = [list(s.labels or ()) for s in sentences]
    docs = [s.doc_index for s in sentences]
    with load_predictor(model_dir, overrides=[f"runconfig.num_threads={threads}"]) as predictor:
        begin = time.perf_counter()
        pred = predictor.predict_tokens(words, [d if d is not None else -1 for d in docs])
        model_seconds = time.perf_counter() - begin
    rows = []
    for name, rules in SETS.items():
        begin = time.perf_counter()
        revised = revise_labels(words, pred, docs, rules)
        seconds = time.perf_counter() - begin
        scores = entity_scores(gold, revised)
        rows.append({"rules": name, "micro": scores["f1"], **{t: v["f1"] for t, v in scores["per_type"].items()},
                     "changed_words": sum(a != b for p, r in zip(pred, revised, strict=True)
                                          for a, b in zip(p, r, strict=True)),
                     "seconds": round(seconds, 3)})
    return rows, model_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--split", default="devel")
    parser.add_argument("--iob", type=Path, help="a TSV folder whose files mark documents (-DOCSTART-)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.iob:
        rows, model_seconds = iob_rows(args.model_dir, args.iob, args.split, args.threads)
    else:
        rows, model_seconds = pubtator_rows(args.model_dir, args.split, args.threads)
    types = [k for k in rows[0] if k not in ("rules", "micro", "errors", "changed_mentions", "changed_words",
                                             "seconds")]
    print(f"{args.model_dir} {args.split}: model {model_seconds:.1f} s")
    print("| rules | micro | " + " | ".join(types) + " | changed | rules s |")
    print("|---|---|" + "---|" * len(types) + "---|---|")
    for r in rows:
        changed = r.get("changed_mentions", r.get("changed_words"))
        print(f"| {r['rules']} | {r['micro']:.2f} | " + " | ".join(f"{r[t]:.2f}" for t in types)
              + f" | {changed} | {r['seconds']:.2f} |")
        if "errors" in r:
            print("|  | " + ", ".join(f"{k} {v}" for k, v in r["errors"].items()) + " |")
    out = ROOT / "bench" / "results" / f"rules_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model_dir": str(args.model_dir), "split": args.split, "iob": str(args.iob),
                               "model_seconds": model_seconds, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
