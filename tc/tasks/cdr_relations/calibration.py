"""``tc calibrate`` for relation model dirs: the threshold that scores best on devel, saved with the model.

A model trained with cross-entropy on a corpus where one candidate pair in five is related rarely has
its best F1 at probability 0.5. The threshold is chosen on devel (never on test) over
``metrics.THRESHOLDS`` and written into ``tc_task.json`` (atomically; the rest of the file as it was),
which ``RelationPredictor`` reads; ``--threshold`` on ``tc predict`` still overrides it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tc.core.fs import atomic_write_text
from tc.core.jobs import TASK_FILE


def _devel_of(model_dir: Path) -> Path:
    """The devel split of the data the model dir's run trained on (its config.yaml), else the shipped one."""
    from tc.core.config import MODEL_DIR_CONFIG
    from tc.core.errors import DataError
    from tc.core.readers import read_yaml
    from tc.tasks.cdr_relations.task import SPLIT_NAMES, default_data_dir
    from tc.tasks.token_cls.documents import find_document_split

    config = model_dir / MODEL_DIR_CONFIG
    data_dir = None
    if config.is_file():
        data_dir = (read_yaml(config).get("train_input") or {}).get("data_dir")
    folder = Path(data_dir) if data_dir else default_data_dir()
    found = find_document_split(folder, SPLIT_NAMES["devel"])
    if found is None:
        raise DataError(f"{folder}: no devel document file to choose a threshold on (pass --split)")
    return found


def choose_threshold(model_dir: Path, split: Path | None, backend: str) -> dict[str, Any]:
    """Score every threshold on ``split`` (default: devel), save the best in tc_task.json, say what changed."""
    from tc.core.fs import write_errors
    from tc.tasks.cdr_relations.corpus import relation_docs
    from tc.tasks.cdr_relations.metrics import THRESHOLDS, best_threshold, found_triples, prf
    from tc.tasks.cdr_relations.predictor import RelationPredictor
    from tc.tasks.token_cls.documents import read_documents

    model_dir = Path(model_dir).expanduser()
    path = split or _devel_of(model_dir)
    docs = read_documents(path)
    with RelationPredictor.from_model_dir(model_dir, backend, threshold=0.0) as model:
        info = dict(model.info)
        found = model.relations(docs)
    gold = {(d.id, h, t) for d in relation_docs(docs, str(info.get("head_type", "Chemical")),
                                                str(info.get("tail_type", "Disease")), model.relation)
            for h, t in d.relations}

    def f1(threshold: float) -> float:
        return prf(gold, found_triples([d.id for d in docs], found, threshold))["f1"]

    previous = float(info.get("threshold", 0.5))
    scores = {t: f1(t) for t in THRESHOLDS}
    best = best_threshold(scores, previous)
    info["threshold"] = best
    info["threshold_chosen_on"] = {"split": str(path), "f1": scores[best]}
    with write_errors(model_dir / TASK_FILE):
        atomic_write_text(model_dir / TASK_FILE, json.dumps(info, indent=2) + "\n")
    return {"threshold": best, "f1": scores[best], "split": str(path), "previous": previous,
            "at_previous": f1(previous)}
