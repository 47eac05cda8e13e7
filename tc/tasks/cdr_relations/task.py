"""The ``cdr_relations`` task: documents -> concept-pair rows -> the BioCreative V CID measure."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tc.core.errors import ConfigError, DataError
from tc.core.fs import atomic_write_bytes, atomic_write_text
from tc.core.interfaces import Dataset, Task
from tc.core.jobs import TASK_FILE
from tc.plugins.manager import registered_model
from tc.tasks.cdr_relations.settings import DEFAULT_DATASET, RelationInput
from tc.tasks.token_cls.settings import DEFAULT_PRETRAINED, pretrained_dir, read_json_object

VOCAB = "vocab.txt"
SPLIT_NAMES = {"devel": ("devel", "dev", "development"), "train": ("train", "training"), "test": ("test",)}


def default_data_dir() -> Path:
    """The shipped BC5CDR-PubTator: ./data/ of the working directory, else of the source checkout."""
    from tc.tasks.token_cls.settings import default_data_dir as shipped

    return shipped(DEFAULT_DATASET)


class CdrRelations(Task):
    name = "cdr_relations"
    description = "Document-level chemical-induced disease relations between concepts (BC5CDR CID)"
    input_config = RelationInput
    default_model = "bert_relations"
    metric_label = "CID F1"
    model_commands: ClassVar[dict[str, str]] = {**Task.model_commands,
                                                "predict": "tc.tasks.cdr_relations.commands:predict",
                                                "calibrate": "tc.tasks.cdr_relations.commands:calibrate"}
    """Its own ``tc predict`` (documents in every format); ``tc serve`` is the core's, over ``predict_records``."""

    @property
    def model_dir(self) -> Path:
        return Path(self.cfg.runconfig.model_dir)

    def _input(self, split: str) -> RelationInput:
        return self.cfg.train_input if split == "train" else self.cfg.eval_input

    def split_path(self, split: str) -> Path:
        """The document file of ``split`` (a split name in the data folder, or a path)."""
        from tc.tasks.token_cls.documents import find_document_split

        section = self._input(split)
        if split not in SPLIT_NAMES and Path(split).expanduser().exists():
            return Path(split).expanduser()
        data_dir = section.data_dir or self.cfg.train_input.data_dir or default_data_dir()
        owner = "eval_input" if split != "train" and section.data_dir is not None else "train_input"
        if not Path(data_dir).is_dir():
            raise ConfigError(f"{owner}.data_dir: {data_dir} is not a folder")
        found = find_document_split(data_dir, SPLIT_NAMES.get(split, (split,)), section.format or
                                    self.cfg.train_input.format)
        if found is None:
            raise DataError(f"{data_dir}: no {split} document file (e.g. {split}.pubtator, {split}.bioc.xml)")
        return found

    def _pretrained(self) -> str | None:
        return getattr(self.cfg.model, "pretrained", None)

    @functools.cached_property
    def vocab_file(self) -> Path:
        explicit = self.cfg.train_input.vocab_file or self.cfg.eval_input.vocab_file
        if explicit is not None:
            if not Path(explicit).is_file():
                raise ConfigError(f"train_input.vocab_file: {explicit} is not a file")
            return Path(explicit)
        if (self.model_dir / VOCAB).exists():
            return self.model_dir / VOCAB
        return pretrained_dir(self._pretrained() or DEFAULT_PRETRAINED) / "vocab.txt"

    @functools.cached_property
    def do_lower(self) -> bool:
        if self.cfg.train_input.do_lower is not None:
            return self.cfg.train_input.do_lower
        if (self.model_dir / TASK_FILE).exists():
            return bool(read_json_object(self.model_dir / TASK_FILE).get("do_lower_case", True))
        pretrained = self._pretrained()
        tokenizer = None if pretrained is None else pretrained_dir(pretrained) / "tokenizer_config.json"
        if tokenizer is not None and tokenizer.exists():
            return bool(read_json_object(tokenizer).get("do_lower_case", True))
        return True

    @functools.cached_property
    def encoder(self) -> Any:
        from tc.tasks.token_cls.wordpiece import WordPieceEncoder

        return WordPieceEncoder(self.vocab_file, do_lower_case=self.do_lower)

    def dataset(self, split: str) -> Dataset:
        from tc.tasks.cdr_relations.corpus import read_relation_docs
        from tc.tasks.cdr_relations.dataset import RelationDataset
        from tc.tasks.cdr_relations.features import encode_document

        section, ti = self._input(split), self.cfg.train_input
        docs = read_relation_docs(self.split_path(split), ti.head_type, ti.tail_type, ti.relation,
                                  section.format or ti.format)[: section.max_documents]
        rows = [encode_document(d, self.encoder, ti.head_type, ti.tail_type, section.max_sequence_length)
                for d in docs]
        return RelationDataset(docs, rows, self.encoder.pad_id)

    @functools.cached_property
    def model_entry(self) -> Any:
        return registered_model(self.cfg.model.name, "model.name")

    @functools.cached_property
    def model_config(self) -> Any:
        config = self.model_entry.configure(self.cfg.model, 2)
        config.cls_id = self.encoder.cls_id
        return config

    def build_model(self) -> Any:
        return self.model_entry.build(self.model_config, self.cfg.model)

    def convert_foreign_state(self, path: Path) -> dict[str, Any] | None:
        from tc.tasks.token_cls.hf_bert import load_hf_checkpoint

        path = Path(path)
        if (path.is_dir() and (path / "config.json").exists()) or path.suffix in (".safetensors", ".bin"):
            return load_hf_checkpoint(path)[0]
        return None

    def predictions_from_outputs(self, dataset: Dataset, batch: dict[str, Any], outputs: Any) -> list[np.ndarray]:
        """Each document's pair probabilities (its own number of pairs of the (B, P) output)."""
        from tc.tasks.cdr_relations.dataset import pair_predictions

        return pair_predictions(dataset, batch, outputs)  # type: ignore[arg-type]

    @property
    def threshold(self) -> float:
        return float(getattr(self.cfg.model, "threshold", 0.5))

    def evaluate(self, dataset: Dataset, predictions: dict[int, np.ndarray]) -> dict[str, Any]:
        from tc.tasks.cdr_relations.metrics import relation_scores

        docs, rows = dataset.docs, dataset.rows  # type: ignore[attr-defined]
        probabilities = [predictions[i] for i in range(len(rows))]
        metrics = relation_scores([d.id for d in docs], [d.relations for d in docs], [r.pairs for r in rows],
                                  probabilities, self.threshold)
        metrics["documents"] = len(docs)
        return metrics

    def render_metrics(self, metrics: dict[str, Any]) -> Any:
        from tc.tasks.cdr_relations.metrics import render

        return render(metrics)

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "cpu", **options: Any) -> Any:
        from tc.tasks.cdr_relations.predictor import RelationPredictor

        return RelationPredictor.from_model_dir(model_dir, backend=backend, **options)

    def meta(self) -> dict[str, Any]:
        return {"task": self.name, "model": self.cfg.model.name, "labels": ["none", self.cfg.train_input.relation],
                "model_config": self.model_config.as_dict()}

    def write_assets(self, model_dir: Path) -> None:
        """vocab.txt and tc_task.json: what the predictor needs beside the weights."""
        model_dir.mkdir(parents=True, exist_ok=True)
        if Path(self.vocab_file).resolve() != (model_dir / VOCAB).resolve():
            atomic_write_bytes(model_dir / VOCAB, Path(self.vocab_file).read_bytes())
        ti = self.cfg.train_input
        info = {"task": self.name, "model": self.cfg.model.name, "do_lower_case": self.do_lower,
                "max_sequence_length": ti.max_sequence_length, "head_type": ti.head_type, "tail_type": ti.tail_type,
                "relation": ti.relation, "threshold": self.threshold, "model_config": self.model_config.as_dict()}
        atomic_write_text(model_dir / TASK_FILE, json.dumps(info, indent=2) + "\n")
