"""tc: fine-tune BERT encoders for token classification on CPU, GPU, DeepSpeed or Cerebras."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tc.tasks.token_cls.predict import Predictor


def load(model_dir: str, backend: str = "cpu") -> Predictor:
    """A ready predictor for a trained model directory: ``tc.load(d).predict(["text", ...])``."""
    from tc.tasks.token_cls.predict import Predictor

    return Predictor.from_model_dir(model_dir, backend=backend)
