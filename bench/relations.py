"""CID relations, measured: BioCreative V CDR P/R/F1 with gold entities and end to end on tc's NER.

    python bench/relations.py REL_MODEL_DIR [--ner NER_MODEL_DIR | --tagged TAGGED.pubtator] [--threads 2]

Gold entities: the relation model over the test abstracts with their annotated mentions and concept ids,
at 0.5 and at the threshold that scored best on devel (what ``tc calibrate`` chooses and saves; chosen
on devel, applied to test). End to end: the same model over the test abstracts as a Chemical/Disease
NER model dir tagged them (``--ner``, through ``tc predict``'s path with its document rules; or a file
it wrote, ``--tagged``), each predicted mention given the concept id of the gold mention at the very
same offsets and type (``pipeline.gold_concepts``; an unmatched mention is a concept of its own, named by its text). Raw
numbers go to ``bench/results/relations_<stamp>.json``.
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
DATA = ROOT / "data" / "BC5CDR-PubTator"


def scorer(model: Any, docs: list[Any], gold: list[Any]) -> Any:
    """``score(threshold) -> prf`` of the model's pair probabilities on ``docs`` (run once) against ``gold``."""
    from tc.tasks.cdr_relations.corpus import relation_docs
    from tc.tasks.cdr_relations.metrics import found_triples, prf

    model.threshold = 0.0  # every pair's probability, thresholded below
    found = model.relations(docs)
    truth = {(d.id, h, t) for d in relation_docs(gold, "Chemical", "Disease", "CID") for h, t in d.relations}

    def score(threshold: float) -> dict[str, Any]:
        return prf(truth, found_triples([d.id for d in docs], found, threshold))

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--ner", type=Path, help="A token_cls model dir tagging Chemical and Disease.")
    parser.add_argument("--tagged", type=Path, help="The test abstracts as the NER model tagged them.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from tc.tasks.cdr_relations.metrics import THRESHOLDS, best_threshold
    from tc.tasks.cdr_relations.pipeline import gold_concepts, tag_mentions
    from tc.tasks.cdr_relations.predictor import RelationPredictor
    from tc.tasks.token_cls.documents import read_documents

    torch.set_num_threads(args.threads)
    devel, test = read_documents(DATA / "devel.pubtator"), read_documents(DATA / "test.pubtator")
    out: dict[str, Any] = {"model_dir": str(args.model_dir), "date": time.strftime("%Y-%m-%d %H:%M")}
    with RelationPredictor.from_model_dir(args.model_dir) as model:
        base = 0.5
        on_devel = scorer(model, devel, devel)
        sweep = {t: on_devel(t)["f1"] for t in THRESHOLDS}
        chosen = best_threshold(sweep, base)
        out["devel"] = {"at_0.5": on_devel(base), "chosen_threshold": chosen, "at_chosen": sweep[chosen]}
        begin = time.perf_counter()
        on_test = scorer(model, test, test)
        out["seconds_test"] = round(time.perf_counter() - begin, 1)
        out["gold_entities"] = {"threshold": base, **on_test(base)}
        out["gold_entities_devel_threshold"] = {"threshold": chosen, **on_test(chosen)}
        tagged = None
        if args.tagged is not None:
            tagged = read_documents(args.tagged)
        elif args.ner is not None:
            tagged = tag_mentions(args.ner, test)
        if tagged is not None:
            mapped = [gold_concepts(p, g) for p, g in zip(tagged, test, strict=True)]
            end_to_end = scorer(model, mapped, test)
            out["end_to_end"] = {"threshold": base, **end_to_end(base)}
            out["end_to_end_devel_threshold"] = {"threshold": chosen, **end_to_end(chosen)}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    target = results / f"relations_{time.strftime('%Y%m%d_%H%M%S')}.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"written to {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
