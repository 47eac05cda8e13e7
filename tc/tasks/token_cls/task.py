"""The ``token_cls`` task: CoNLL/TSV or documents -> WordPiece features -> BERT token head -> F1.

Scores are seqeval's entity F1 on words (top-level ``f1``, what model selection uses, as before) and,
for splits read from documents, mention-level exact-offset F1 on the original documents (``mentions``,
``mention_f1``). With ``train_input.corpora`` the label map is the union of the corpora's types and
evaluation reports each corpus (``corpora``) beside the overall scores.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tc.core.errors import ConfigError, DataError
from tc.core.fs import atomic_write_bytes, atomic_write_text
from tc.core.interfaces import Dataset, Task
from tc.core.jobs import TASK_FILE
from tc.plugins.manager import registered_model  # re-exported: the lookup is the plugin manager's
from tc.tasks.token_cls.settings import (
    DEFAULT_PRETRAINED,
    TokenClsInput,
    default_data_dir,
    pretrained_dir,
    read_json_object,
)
from tc.tasks.token_cls.sources import Source, SplitData, load_sources, log

ASSET_LABELS = "label2id.json"
ASSET_VOCAB = "vocab.txt"
ASSET_TASK = TASK_FILE


class TokenClassification(Task):
    name = "token_cls"
    description = "Token classification / NER with a BERT encoder and a linear token head"
    input_config = TokenClsInput
    default_model = "bert"
    model_commands: ClassVar[dict[str, str]] = {"predict": "tc.tasks.token_cls.commands:predict",
                                                "export": "tc.tasks.token_cls.commands:export",
                                                "serve": "tc.tasks.token_cls.serve.command:serve",
                                                "calibrate": "tc.tasks.token_cls.calibrate_command:calibrate"}
    selection_metric = "f1"
    """seqeval's entity-level micro F1 on words (percent): what picks the best checkpoint."""
    selection_mode = "max"
    metric_label = "entity-level F1"

    def predictions_from_outputs(self, dataset: Dataset, batch: dict[str, Any], outputs: Any) -> list[np.ndarray]:
        """One class id (or probability) per word piece of each window (``outputs``: a (B, T) tensor), its own
        length: the model tags every position, and ``word_predictions`` maps pieces to words afterwards."""
        from tc.core.interfaces import per_position

        return per_position(dataset, batch, outputs)

    # -- inputs ------------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return Path(self.cfg.runconfig.model_dir)

    def _input(self, split: str) -> TokenClsInput:
        return self.cfg.train_input if split == "train" else self.cfg.eval_input

    def _data_dir(self, split: str) -> Path:
        section = self._input(split)
        return section.data_dir or self.cfg.train_input.data_dir or default_data_dir()

    def _sources(self, split: str) -> list[Source]:
        """eval_input's own corpora or data_dir for evaluation splits, else train_input's corpora or data_dir."""
        section, ti = self._input(split), self.cfg.train_input
        fmt = section.format or ti.format
        if split != "train" and section.data_dir is not None and not section.corpora:
            return [Source(section.data_dir, None, fmt, Path(section.data_dir).name, 0, "eval_input.data_dir")]
        owner = "eval_input" if split != "train" and section.corpora else "train_input"
        corpora = section.corpora if owner == "eval_input" else ti.corpora
        if not corpora:
            return [Source(self._data_dir(split), None, fmt, Path(self._data_dir(split)).name)]
        if ti.label_scheme != "typed":
            raise ConfigError(f"{owner}.corpora: several corpora need label_scheme typed (the seed's labels have "
                              "no types to mask)")
        sources = []
        for i, c in enumerate(corpora):
            types = None if c.types is None else tuple(c.types)
            sources.append(Source(c.data_dir, types, c.format, c.name or Path(c.data_dir).name, i,
                                  f"{owner}.corpora[{i}].data_dir"))
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"{owner}.corpora: two corpora are named {max(names, key=names.count)!r}; "
                              "give each a name")
        return sources

    @functools.cache  # noqa: B019 - one task per run; caching splits avoids re-reading files
    def split_data(self, split: str) -> SplitData:
        """The split's sentences and where they came from (documents kept for mention scoring)."""
        return load_sources(self._sources(split), split, self._input(split).max_sentences)

    @functools.cached_property
    def corpus_types(self) -> list[tuple[str, ...]]:
        """Per training corpus, the types it annotates: declared, else those its train split has."""
        out = []
        train = self.split_data("train")
        for part in train.parts:
            seen = sorted({x[2:] for s in train.sentences[part.start : part.stop] for x in s.labels or () if x != "O"})
            declared = part.source.types
            out.append(tuple(declared) if declared is not None else tuple(seen))
        return out

    def _class_mask(self, data: SplitData) -> np.ndarray | None:
        """(sentences, classes) bool: the classes each sentence's corpus annotates (O always); None with one
        corpus that annotates everything."""
        if not self.cfg.train_input.corpora:
            return None
        types = self.corpus_types
        labels = self.label_map.labels
        per_corpus = np.array([[x == "O" or x[2:] in t for x in labels] for t in types], dtype=bool)
        mask = np.empty((len(data.sentences), len(labels)), dtype=bool)
        for part in data.parts:
            mask[part.start : part.stop] = per_corpus[part.source.index]
        return mask

    def _context_tokens(self, split: str) -> int:
        own = self._input(split).context_tokens
        return own if own is not None else (self.cfg.train_input.context_tokens or 0)

    def _existing(self, path: Path, key: str, what: str) -> Path:
        """``path`` if it is a file; otherwise an error naming the config key that gave it."""
        if not path.is_file():
            section = "train_input" if getattr(self.cfg.train_input, key) is not None else "eval_input"
            state = "is a directory" if path.is_dir() else "not found"
            raise DataError(f"{path}: {what} {state} ({section}.{key})")
        return path

    @property
    def _pretrained(self) -> str | None:
        """``model.pretrained``, when the model's section has such a key (a plugin model may not)."""
        return getattr(self.cfg.model, "pretrained", None)

    @functools.cached_property
    def vocab_file(self) -> Path:
        """Explicit vocab, else the one saved with the model, else the pretrained checkpoint's."""
        explicit = self.cfg.train_input.vocab_file or self.cfg.eval_input.vocab_file
        if explicit is not None:
            return self._existing(Path(explicit), "vocab_file", "vocab file")
        if (self.model_dir / ASSET_VOCAB).exists():
            return self.model_dir / ASSET_VOCAB
        return pretrained_dir(self._pretrained or DEFAULT_PRETRAINED) / "vocab.txt"

    @functools.cached_property
    def do_lower(self) -> bool:
        if self.cfg.train_input.do_lower is not None:
            return self.cfg.train_input.do_lower
        saved = self.model_dir / ASSET_TASK
        if saved.exists():
            info = read_json_object(saved)
            if "do_lower_case" not in info:
                raise DataError(f"{saved}: no 'do_lower_case' key (set train_input.do_lower explicitly)")
            return bool(info["do_lower_case"])
        if self._pretrained is not None:
            tok = pretrained_dir(self._pretrained) / "tokenizer_config.json"
            if tok.exists():
                return bool(read_json_object(tok).get("do_lower_case", True))
        return True

    @functools.cached_property
    def encoder(self) -> Any:
        from tc.tasks.token_cls.wordpiece import WordPieceEncoder

        return WordPieceEncoder(self.vocab_file, do_lower_case=self.do_lower)

    @functools.cached_property
    def label_map(self) -> Any:
        """Explicit label file, else the trained model's, else the labels seen in the train split."""
        from tc.tasks.token_cls.labels import LabelMap

        explicit = self.cfg.train_input.label_vocab_file
        if explicit is not None:
            return LabelMap.load(self._existing(Path(explicit), "label_vocab_file", "label vocab file"))
        saved = self.model_dir / ASSET_LABELS
        if saved.exists():
            return LabelMap.load(saved)
        return LabelMap.from_sentences(self._sentences("train"), scheme=self.cfg.train_input.label_scheme)

    def _sentences(self, split: str) -> list[Any]:
        return self.split_data(split).sentences

    @functools.cache  # noqa: B019
    def dataset(self, split: str) -> Dataset:
        from tc.tasks.token_cls.dataset import TokenClsDataset, model_inputs

        section = self._input(split)
        max_len = section.max_sequence_length
        max_pos = getattr(self.model_config, "max_position_embeddings", None)
        if max_pos is not None and max_len > max_pos:
            raise ConfigError(
                f"{'train_input' if split == 'train' else 'eval_input'}.max_sequence_length={max_len} exceeds "
                f"model.max_position_embeddings={max_pos}"
            )
        data = self.split_data(split)
        dataset = TokenClsDataset(
            data.sentences, self.encoder, self.label_map, max_len, scheme=self.cfg.train_input.label_scheme,
            context_tokens=self._context_tokens(split),
            class_mask=self._class_mask(data) if split == "train" else None,
            label_all_subwords=self._label_all_subwords(split), **model_inputs(self.model_config),
        )
        self._splits[id(dataset)] = data
        return dataset

    def _label_all_subwords(self, split: str) -> bool:
        """``train_input.label_all_subwords`` for the train split (unset: on where it applies); refused where
        it is set and cannot mean anything."""
        if self.cfg.eval_input.label_all_subwords:
            raise ConfigError("eval_input.label_all_subwords: evaluation reads one label per word, on its first "
                              "piece; set train_input.label_all_subwords")
        ti = self.cfg.train_input
        crf = getattr(self.model_config, "head", None) == "crf"
        if ti.label_all_subwords is None:
            return split == "train" and ti.label_scheme == "typed" and not crf
        if ti.label_all_subwords and ti.label_scheme != "typed":
            raise ConfigError("train_input.label_all_subwords: needs train_input.label_scheme typed (the seed "
                              "scheme labels a word's later pieces X)")
        if ti.label_all_subwords and crf:
            raise ConfigError("train_input.label_all_subwords: the CRF head (model.head=crf) chains words, one "
                              "label each; use the softmax head to label every piece")
        return split == "train" and ti.label_all_subwords

    @functools.cached_property
    def _splits(self) -> dict[int, SplitData]:
        """Datasets this task built -> their split data (evaluation scores the documents behind them)."""
        return {}

    # -- model -------------------------------------------------------------------------------
    @functools.cached_property
    def model_name(self) -> str:
        return getattr(self.cfg.model, "name", None) or self.default_model

    @functools.cached_property
    def model_entry(self) -> Any:
        """The registered model ``model.name`` names (the ``model`` section was validated by its schema)."""
        return registered_model(self.model_name, "model.name")

    @functools.cached_property
    def model_config(self) -> Any:
        """The model's architecture (its ``configure``), checked against the vocabulary."""
        config = self.model_entry.configure(self.cfg.model, len(self.label_map.labels))
        config = self._resolve_decoding(config)
        vocab_size = getattr(config, "vocab_size", None)
        if vocab_size is not None and self.encoder.vocab_size != vocab_size:
            raise DataError(
                f"{self.vocab_file}: vocabulary has {self.encoder.vocab_size} entries but the model expects "
                f"{vocab_size} (model.vocab_size)"
            )
        return config

    def _resolve_decoding(self, config: Any) -> Any:
        """``model.decoding`` unset means constrained, except for the seed scheme (argmax: its labels include
        X, [CLS] and [SEP], and it is the Model Zoo's recipe), where constrained is refused."""
        if getattr(config, "decoding", None) != "constrained" or self.cfg.train_input.label_scheme == "typed":
            return config
        if getattr(config, "head", "softmax") != "softmax":
            return config  # a CRF decodes with its own Viterbi; prepare_head refuses the seed scheme for it
        if getattr(self.cfg.model, "decoding", None) == "constrained":
            raise ConfigError("model.decoding: constrained needs train_input.label_scheme typed (the seed scheme "
                              "labels subword pieces and special tokens, which the chain over words forbids)")
        return replace(config, decoding="argmax") if is_dataclass(config) else config

    def build_model(self) -> Any:
        """A fresh module of the model ``model.name`` names (``bert``: the encoder from ``model.pretrained``);
        a CRF head gets the transitions this label map allows (``crf_head.prepare_head``), constrained decoding
        the same constraints (``decoding.attach_word_decoder``)."""
        from tc.tasks.token_cls.crf_head import prepare_head
        from tc.tasks.token_cls.decoding import attach_word_decoder

        module = self.model_entry.build(self.model_config, self.cfg.model)
        module = prepare_head(module, self.label_map.labels, self.cfg.train_input)
        return attach_word_decoder(module, self.label_map.labels, self.cfg.train_input.label_scheme)

    def convert_foreign_state(self, path: Path) -> dict[str, Any] | None:
        from tc.tasks.token_cls.hf_bert import load_hf_checkpoint

        path = Path(path)
        is_hf_dir = path.is_dir() and (path / "config.json").exists()
        if is_hf_dir or path.suffix in (".safetensors", ".bin"):
            state, _ = load_hf_checkpoint(path)
            return state
        return None

    # -- metrics -----------------------------------------------------------------------------
    def evaluate(self, dataset: Dataset, predictions: dict[int, np.ndarray]) -> dict[str, Any]:
        """seqeval entity scores (top-level ``f1``), token macro F1, and for a split this task read: per
        corpus scores, mention scores on its documents, and the final split's predictions written back
        into the model directory in the documents' own format."""
        from tc.tasks.token_cls.metrics import entity_scores, split_scores, token_macro_f1

        words = dataset.word_predictions(predictions)
        data = self._splits.get(id(dataset))
        if data is None:
            metrics = entity_scores(dataset.word_labels(), words)
        else:
            metrics = split_scores(data, dataset.word_labels(), words, self._part_types(data), self.document_rules)
            if data.split == (self.cfg.eval_input.split or "test") and os.environ.get("RANK", "0") == "0":
                self._write_predictions(data, words, metrics)
        gold, pred = dataset.token_level_ids(predictions)
        metrics["token_macro_f1"] = token_macro_f1(gold, pred, len(self.label_map.labels))
        metrics["sentences"] = len(dataset.sentences)
        return metrics

    @property
    def document_rules(self) -> tuple[str, ...]:
        """``model.document_rules``, unset meaning tc's default (``settings.DEFAULT_DOCUMENT_RULES``)."""
        from tc.tasks.token_cls.settings import DEFAULT_DOCUMENT_RULES

        rules = getattr(self.cfg.model, "document_rules", None)  # a plugin model's section may lack it
        return DEFAULT_DOCUMENT_RULES if rules is None else tuple(rules)

    def _part_types(self, data: SplitData) -> list[tuple[str, ...] | None]:
        """What each part is scored on: a training corpus's types, else what its source declares (None: all)."""
        from_train = self.cfg.train_input.corpora and self._sources(data.split)[0].key.startswith("train_input")
        return [self.corpus_types[p.source.index] if from_train else p.source.types for p in data.parts]

    def _write_predictions(self, data: SplitData, words: list[list[str]], metrics: dict[str, Any]) -> None:
        """``<model_dir>/<input file name>`` for each document part (``<corpus>.<name>`` with several)."""
        from tc.tasks.token_cls.documents import write_documents
        from tc.tasks.token_cls.metrics import predicted_documents

        written = []
        parts = [p for p in data.parts if p.corpus is not None and p.path is not None]
        for part in parts:
            name = part.path.name if len(parts) == 1 else f"{part.source.name}.{part.path.name}"
            docs = predicted_documents(part, words, self.document_rules)
            target = self.model_dir / name
            write_documents(target, docs, part.fmt)
            written.append(str(target))
        if written:
            metrics["predictions_written"] = written
            log(f"{data.split} predictions: {', '.join(written)}")

    def render_metrics(self, metrics: dict[str, Any]) -> Any:
        from tc.tasks.token_cls.metrics import render

        return render(metrics)

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "cpu", **options: Any) -> Any:
        """``tc.load(model_dir)``: a Predictor on ``backend`` (best weights, else the newest checkpoint),
        through the loader ``tc predict``, ``tc serve`` and ``tc calibrate`` use (``onnx_export.load_predictor``:
        a calibrated model dir's temperature applied; ``options``: its keywords, e.g. ``batch_size``,
        ``precision``, ``checkpoint``, ``calibrated=False``)."""
        from tc.tasks.token_cls.onnx_export import load_predictor

        return load_predictor(model_dir, backend=backend, **options)

    # -- persistence -------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "model": self.model_name,
            "labels": list(self.label_map.labels),
            "label_scheme": self.cfg.train_input.label_scheme,
            "model_config": asdict(self.model_config),
        }

    def write_assets(self, model_dir: Path) -> None:
        """label2id.json, vocab.txt and tc_task.json: what predict and export need beside weights."""
        model_dir.mkdir(parents=True, exist_ok=True)
        self.label_map.save(model_dir / ASSET_LABELS)
        if Path(self.vocab_file).resolve() != (model_dir / ASSET_VOCAB).resolve():
            atomic_write_bytes(model_dir / ASSET_VOCAB, Path(self.vocab_file).read_bytes())
        info = {
            "task": self.name,
            "model": self.model_name,
            "do_lower_case": self.do_lower,
            "max_sequence_length": self.cfg.train_input.max_sequence_length,
            "label_scheme": self.cfg.train_input.label_scheme,
            "context_tokens": self._context_tokens("devel"),  # as evaluated, so predict feeds the same
            "model_config": asdict(self.model_config),
        }
        if getattr(self.cfg.model, "document_rules", None) is not None:  # unset: tc's default when it predicts
            info["document_rules"] = list(self.cfg.model.document_rules)
        atomic_write_text(model_dir / ASSET_TASK, json.dumps(info, indent=2) + "\n")
