"""An example tc plugin: one backend, one task and one model, registered through hooks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from tc.backends.eager import EagerRunner
from tc.core.config import Section
from tc.core.interfaces import Backend, Dataset, Model, OptimSpec, Runner, Task, per_position
from tc.plugins import hookimpl

VOCAB = 50


class SingleThreadBackend(Backend):
    name = "single-thread"
    description = "Host CPU on one thread (reproducible timings), from tc-example-plugin"

    def setup(self) -> None:
        torch.set_num_threads(1)

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        return EagerRunner(model, spec, torch.device("cpu"))


class ParityInput(Section):
    num_sequences: int = Field(256, gt=0)
    max_sequence_length: int = Field(16, gt=1)
    batch_size: int = Field(16, gt=0)
    split: str | None = None
    shuffle: bool = True


class ParityModelConfig(Section):
    name: str = "parity_tagger"
    hidden_size: int = Field(16, gt=0)


class ParityDataset(Dataset):
    """Random token sequences; the label of a token is its parity."""

    def __init__(self, count: int, max_len: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.lengths = rng.integers(2, max_len + 1, size=count)
        self.rows = [rng.integers(1, VOCAB, size=n).astype(np.int32) for n in self.lengths]
        self.loss_tokens = self.lengths.copy()

    def __len__(self) -> int:
        return len(self.rows)

    def collate(self, indices: Sequence[int], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        width = pad_to or int(max(self.lengths[i] for i in indices))
        ids = np.zeros((len(indices), width), dtype=np.int32)
        labels = np.full((len(indices), width), -100, dtype=np.int32)
        for r, i in enumerate(indices):
            ids[r, : self.lengths[i]] = self.rows[i]
            labels[r, : self.lengths[i]] = self.rows[i] % 2
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy((ids > 0).astype(np.int32)),
                "labels": torch.from_numpy(labels), "index": torch.as_tensor(list(indices), dtype=torch.int64)}


class ParityTagger(torch.nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, hidden)
        self.head = torch.nn.Linear(hidden, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(torch.relu(self.embed(batch["input_ids"].long())))  # (B, T, 2)
        if "labels" not in batch:
            return logits, None
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].long().flatten())


class ParityTagging(Task):
    name = "parity_tagging"
    description = "Tag tokens of synthetic sequences as odd/even (from tc-example-plugin)"
    input_config = ParityInput
    default_model = "parity_tagger"
    selection_metric = "accuracy"
    """Per-token accuracy (percent) picks the best checkpoint: parity has no entities to score F1 on."""
    metric_label = "token accuracy"

    def dataset(self, split: str) -> Dataset:
        section = self.cfg.train_input if split == "train" else self.cfg.eval_input
        seed = {"train": 0, "devel": 1}.get(split, 2)
        return ParityDataset(section.num_sequences, section.max_sequence_length, seed)

    def build_model(self) -> torch.nn.Module:
        return ParityModel.build(ParityModel.configure(self.cfg.model, 2))

    def convert_foreign_state(self, path: Path) -> dict[str, torch.Tensor] | None:
        return None

    def evaluate(self, dataset: Dataset, predictions: dict[int, np.ndarray]) -> dict[str, Any]:
        assert isinstance(dataset, ParityDataset)
        correct = sum(int((predictions[i] == dataset.rows[i] % 2).sum()) for i in range(len(dataset)))
        accuracy = 100.0 * correct / int(dataset.lengths.sum())
        return {"accuracy": accuracy}

    def write_assets(self, model_dir: Path) -> None:
        """tc_task.json names the task, so ``tc predict`` / ``tc serve`` know who reads this model dir."""
        import json

        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "tc_task.json").write_text(json.dumps({"task": self.name, "hidden_size":
                                                            self.cfg.model.hidden_size}) + "\n")

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "cpu", **options: Any) -> ParityPredictor:
        """``tc.load`` and, through ``predict_records``, tc's generic ``tc predict`` and ``tc serve``."""
        return ParityPredictor(Path(model_dir))

    def predictions_from_outputs(self, dataset: Dataset, batch: dict[str, torch.Tensor],
                                 outputs: torch.Tensor) -> list[np.ndarray]:
        """A parity per token: each row's own length of the (B, T) output, padding cut off (tc's
        ``per_position``; a task with one label per sequence would return ``list(outputs.numpy())``)."""
        return per_position(dataset, batch, outputs)


class ParityPredictor:
    """The example task's predictor: ``{"tokens": [3, 8, ...]}`` records in, ``{"parities": [...]}`` out. Having
    ``predict_records`` and ``describe`` is all tc's task-generic ``tc predict`` and ``tc serve`` need."""

    def __init__(self, model_dir: Path) -> None:
        import json

        from tc.core.checkpoint import load_file
        from tc.core.checkpoint.policy import pick_weights

        info = json.loads((model_dir / "tc_task.json").read_text())
        picked = pick_weights(model_dir, load_file)
        if picked is None:
            from tc.core.errors import CheckpointError

            raise CheckpointError(f"{model_dir}: no weights to predict with (train first)")
        self.model_dir, self.weights = model_dir, picked.path
        self.module = ParityTagger(int(info["hidden_size"]))
        self.module.load_state_dict(picked.state["model"])
        self.module.eval()

    def predict_records(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        from tc.core.errors import DataError

        out = []
        for n, record in enumerate(records):
            tokens = record.get("tokens")
            if not (isinstance(tokens, list) and tokens and all(type(t) is int and 0 < t < VOCAB for t in tokens)):
                raise DataError(f"records[{n}].tokens: must be a list of integers from 1 to {VOCAB - 1}")
            with torch.no_grad():
                logits, _ = self.module({"input_ids": torch.tensor([tokens])})
            out.append({"parities": ["odd" if c else "even" for c in logits[0].argmax(-1).tolist()]})
        return out

    def describe(self) -> dict[str, Any]:
        return {"task": "parity_tagging", "model_dir": str(self.model_dir), "weights": self.weights.name}

    def close(self) -> None:
        pass


class ParityModel(Model):
    """The ``parity_tagger`` model: the ``model`` section's schema and the module the task trains."""

    name = "parity_tagger"
    config_model = ParityModelConfig

    @classmethod
    def configure(cls, settings: Any, num_classes: int) -> Any:
        return settings

    @classmethod
    def build(cls, config: Any, settings: Any = None) -> torch.nn.Module:
        return ParityTagger(config.hidden_size)


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(SingleThreadBackend)


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(ParityTagging)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("parity_tagger", ParityModel)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    import click

    @cli.command("parity-demo")
    @click.option("--length", default=6, show_default=True)
    def parity_demo(length: int) -> None:
        """Print one synthetic parity_tagging example (added by tc-example-plugin)."""
        dataset = ParityDataset(1, length, seed=0)
        tokens = dataset.rows[0].tolist()
        click.echo(" ".join(f"{t}/{'odd' if t % 2 else 'even'}" for t in tokens))
