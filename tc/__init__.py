"""tc: fine-tune BERT encoders for token classification on CPU, GPU, DeepSpeed or Cerebras."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(model_dir: str, backend: str = "cpu", **options: Any) -> Any:
    """A ready predictor for a trained model directory: ``tc.load(d).predict(["text", ...])``.

    The task that trained the directory (its ``tc_task.json``) provides the predictor, so a plugin task's
    model directories load the same way; for token_cls it is a ``Predictor`` (``options``: its
    ``from_model_dir`` keywords, e.g. ``batch_size``)."""
    from tc.core.jobs import load as load_model_dir

    return load_model_dir(model_dir, backend=backend, **options)
