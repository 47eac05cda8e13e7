"""The ``token_cls`` task: CoNLL/TSV data -> WordPiece features -> BERT token head -> seqeval F1."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tc.core.errors import ConfigError, DataError
from tc.core.interfaces import Dataset, Task
from tc.tasks.token_cls.settings import (
    DEFAULT_PRETRAINED,
    TokenClsInput,
    bert_config,
    default_data_dir,
    pretrained_dir,
    read_json_object,
)

ASSET_LABELS = "label2id.json"
ASSET_VOCAB = "vocab.txt"
ASSET_TASK = "tc_task.json"


class TokenClassification(Task):
    name = "token_cls"
    description = "Token classification / NER with a BERT encoder and a linear token head"
    input_config = TokenClsInput
    default_model = "bert"

    # -- inputs ------------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return Path(self.cfg.runconfig.model_dir)

    def _input(self, split: str) -> TokenClsInput:
        return self.cfg.train_input if split == "train" else self.cfg.eval_input

    def _data_dir(self, split: str) -> Path:
        section = self._input(split)
        return section.data_dir or self.cfg.train_input.data_dir or default_data_dir()

    def _existing(self, path: Path, key: str, what: str) -> Path:
        """``path`` if it is a file; otherwise an error naming the config key that gave it."""
        if not path.is_file():
            section = "train_input" if getattr(self.cfg.train_input, key) is not None else "eval_input"
            state = "is a directory" if path.is_dir() else "not found"
            raise DataError(f"{path}: {what} {state} ({section}.{key})")
        return path

    @functools.cached_property
    def vocab_file(self) -> Path:
        """Explicit vocab, else the one saved with the model, else the pretrained checkpoint's."""
        explicit = self.cfg.train_input.vocab_file or self.cfg.eval_input.vocab_file
        if explicit is not None:
            return self._existing(Path(explicit), "vocab_file", "vocab file")
        if (self.model_dir / ASSET_VOCAB).exists():
            return self.model_dir / ASSET_VOCAB
        return pretrained_dir(self.cfg.model.pretrained or DEFAULT_PRETRAINED) / "vocab.txt"

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
        if self.cfg.model.pretrained is not None:
            tok = pretrained_dir(self.cfg.model.pretrained) / "tokenizer_config.json"
            if tok.exists():
                return bool(read_json_object(tok).get("do_lower_case", True))
        return True

    @functools.cached_property
    def encoder(self) -> Any:
        from tc.tasks.token_cls.data import WordPieceEncoder

        return WordPieceEncoder(self.vocab_file, do_lower_case=self.do_lower)

    @functools.cached_property
    def label_map(self) -> Any:
        """Explicit label file, else the trained model's, else the labels seen in the train split."""
        from tc.tasks.token_cls.data import LabelMap

        explicit = self.cfg.train_input.label_vocab_file
        if explicit is not None:
            return LabelMap.load(self._existing(Path(explicit), "label_vocab_file", "label vocab file"))
        saved = self.model_dir / ASSET_LABELS
        if saved.exists():
            return LabelMap.load(saved)
        return LabelMap.from_sentences(self._sentences("train"), scheme=self.cfg.train_input.label_scheme)

    @functools.cache  # noqa: B019 - one task per run; caching splits avoids re-reading files
    def _sentences(self, split: str) -> list[Any]:
        from tc.tasks.token_cls.data import load_split

        sentences = load_split(self._data_dir(split), split)
        limit = self._input(split).max_sentences
        return sentences[:limit] if limit else sentences

    @functools.cache  # noqa: B019
    def dataset(self, split: str) -> Dataset:
        from tc.tasks.token_cls.data import TokenClsDataset

        section = self._input(split)
        max_len = section.max_sequence_length
        max_pos = self.model_config.max_position_embeddings
        if max_len > max_pos:
            raise ConfigError(
                f"{'train_input' if split == 'train' else 'eval_input'}.max_sequence_length={max_len} exceeds "
                f"model.max_position_embeddings={max_pos}"
            )
        return TokenClsDataset(
            self._sentences(split), self.encoder, self.label_map, max_len, scheme=self.cfg.train_input.label_scheme
        )

    # -- model -------------------------------------------------------------------------------
    @functools.cached_property
    def model_config(self) -> Any:
        config = bert_config(self.cfg.model, len(self.label_map.labels))
        if self.encoder.vocab_size != config.vocab_size:
            raise DataError(
                f"{self.vocab_file}: vocabulary has {self.encoder.vocab_size} entries but the model expects "
                f"{config.vocab_size} (model.vocab_size)"
            )
        return config

    def build_model(self) -> Any:
        """A fresh model; with ``model.pretrained`` the encoder starts from those weights."""
        from tc.core.checkpoint import match_state
        from tc.tasks.token_cls import model as bert
        from tc.tasks.token_cls.hf_bert import load_hf_checkpoint

        module = bert.BertForTokenClassification(self.model_config)
        if self.cfg.model.pretrained is not None:
            state, _ = load_hf_checkpoint(pretrained_dir(self.cfg.model.pretrained))
            fitting, report = match_state(module, state)
            if report.mismatched:
                key, theirs, ours = report.mismatched[0]
                raise ConfigError(f"model: {key} is {list(ours)} but the pretrained checkpoint has {list(theirs)}")
            module.load_state_dict(fitting, strict=False)
        return module

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
        from tc.tasks.token_cls.metrics import entity_scores, token_macro_f1

        metrics = entity_scores(dataset.word_labels(), dataset.word_predictions(predictions))
        gold, pred = dataset.token_level_ids(predictions)
        metrics["token_macro_f1"] = token_macro_f1(gold, pred, len(self.label_map.labels))
        metrics["sentences"] = len(dataset.sentences)
        return metrics

    def render_metrics(self, metrics: dict[str, Any]) -> Any:
        from tc.tasks.token_cls.metrics import metrics_table

        return metrics_table(metrics)

    # -- persistence -------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "labels": list(self.label_map.labels),
            "label_scheme": self.cfg.train_input.label_scheme,
            "model_config": asdict(self.model_config),
        }

    def write_assets(self, model_dir: Path) -> None:
        """label2id.json, vocab.txt and tc_task.json: what predict and export need beside weights."""
        model_dir.mkdir(parents=True, exist_ok=True)
        self.label_map.save(model_dir / ASSET_LABELS)
        if Path(self.vocab_file).resolve() != (model_dir / ASSET_VOCAB).resolve():
            shutil.copyfile(self.vocab_file, model_dir / ASSET_VOCAB)
        info = {
            "task": self.name,
            "do_lower_case": self.do_lower,
            "max_sequence_length": self.cfg.train_input.max_sequence_length,
            "label_scheme": self.cfg.train_input.label_scheme,
            "model_config": asdict(self.model_config),
        }
        (model_dir / ASSET_TASK).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
