"""ONNX export of a trained token_cls model and fast CPU inference on onnxruntime, fp32 or int8.

``tc export --format onnx OUT`` writes ``OUT/model.onnx`` (fp32) and ``OUT/model.int8.onnx`` (dynamic
int8) beside the Hugging Face files, so OUT is also what optimum's ``ORTModelForTokenClassification``
loads. ``tc predict/serve --precision onnx|int8`` run the same Predictor (same words, windows, word
mapping, entity spans and scores) with an onnxruntime session in place of the torch runner; the
session's model is exported once and cached in ``MODEL_DIR/onnx/``, keyed on the weights file.

Why the legacy TorchScript exporter (``dynamo=False``): the dynamo exporter needs ``onnxscript``, which
tc does not depend on, and a BERT encoder has no control flow the tracer could miss once the attention
bias is computed unconditionally (``tc``'s eager path skips it when nothing is padded; that skip reads
tensor values and would be baked into a trace). Batch and sequence axes are dynamic.

int8 is onnxruntime's dynamic quantization of the MatMul weights (per-channel int8; activations
quantized per batch at run time); embeddings, LayerNorm and softmax stay fp32, which keeps the F1 drop
small (``bench/int8_quality.py`` measures it on devel).

A CRF head (``model.head: crf``) is not in the graph: it emits the emissions (the classifier's logits), and
the CRF's tensors go to ``crf.safetensors`` beside it in an export (``crf_head``). ``--precision onnx|int8``
decodes the session's emissions with Viterbi under the CRF of the same weights file, as the torch path does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import tc
from tc.core.errors import TcError, first_line
from tc.core.fs import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import torch

    from tc.tasks.token_cls.crf import LinearChainCRF
    from tc.tasks.token_cls.model_dir import TrainedModel
    from tc.tasks.token_cls.predict import Predictor

PRECISIONS = ("fp32", "onnx", "int8")
"""fp32: tc's torch runner; onnx: onnxruntime fp32; int8: onnxruntime with dynamic int8 MatMuls."""
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CACHE_DIR = "onnx"
SOURCE_FILE = "source.json"
LOGITS_ATOL = 1e-4
"""Largest |logit| difference between onnxruntime fp32 and tc's torch model that tests accept."""


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def exportable(model: torch.nn.Module) -> torch.nn.Module:
    """tc's BertForTokenClassification as ``(input_ids, attention_mask, token_type_ids) -> logits``."""
    import torch

    from tc.tasks.token_cls.model import MASK_VALUE

    class TokenClsGraph(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            bias = attention_mask[:, None, None, :].eq(0).float() * MASK_VALUE  # always: no data-dependent skip
            h = self.inner.embeddings(input_ids, token_type_ids)
            h = self.inner.encoder(h, bias)
            return self.inner.classifier(h)

    return TokenClsGraph(model).eval()


def onnx_bytes(model: torch.nn.Module, opset: int = OPSET) -> bytes:
    """The serialized fp32 ONNX graph of ``model`` with dynamic batch and sequence axes."""
    import warnings

    import torch

    graph = exportable(model)
    sample = torch.ones((2, 8), dtype=torch.int64)
    buffer = io.BytesIO()
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "logits")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about the length check, DeprecationWarning of dynamo=False
        torch.onnx.export(graph, (sample, sample, torch.zeros_like(sample)), buffer, dynamo=False,
                          input_names=list(INPUTS), output_names=["logits"], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)
    return buffer.getvalue()


def quantize_int8(fp32_path: Path, out_path: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights of ``fp32_path`` into ``out_path`` (atomic)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".int8.") as tmp:
        staged = Path(tmp) / out_path.name
        logging.disable(logging.WARNING)  # its advice to run shape pre-processing: MatMul weights need none
        try:
            quantize_dynamic(fp32_path, staged, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        finally:
            logging.disable(logging.NOTSET)
        atomic_write_bytes(out_path, staged.read_bytes())


def write_onnx(trained: TrainedModel, out: Path, int8: bool = True) -> list[Path]:
    """``out/model.onnx`` (and ``out/model.int8.onnx``) for ``trained``; returns the files written."""
    fp32 = out / FP32_FILE
    atomic_write_bytes(fp32, onnx_bytes(trained.build_model()))
    written = [fp32]
    if int8:
        quantize_int8(fp32, out / INT8_FILE)
        written.append(out / INT8_FILE)
    return written


def _source_key(trained: TrainedModel) -> dict[str, Any]:
    stat = trained.weights_path.stat()
    return {"weights": str(trained.weights_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "tc_version": tc.__version__, "opset": OPSET}


def cached_onnx(trained: TrainedModel, precision: str, cache: Path | None = None) -> Path:
    """The ONNX file for ``precision`` ("onnx" or "int8"), exported now unless a cached one was made
    from the same weights file (path, size, mtime) by this tc. A read-only model directory falls back
    to a per-user temporary cache."""
    folder = cache or trained.model_dir / CACHE_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"tc-onnx-{os.getuid()}" / _slug(trained.weights_path)
        folder.mkdir(parents=True, exist_ok=True)
    key = _source_key(trained)
    source = folder / SOURCE_FILE
    try:
        fresh = json.loads(source.read_text(encoding="utf-8")) == key
    except (OSError, ValueError):
        fresh = False
    target = folder / (INT8_FILE if precision == "int8" else FP32_FILE)
    if fresh and target.is_file() and (precision != "int8" or (folder / FP32_FILE).is_file()):
        return target
    if not fresh:
        with contextlib.suppress(OSError):
            source.unlink()  # the files below no longer match any recorded source
    fp32 = folder / FP32_FILE
    if not (fresh and fp32.is_file()):
        atomic_write_bytes(fp32, onnx_bytes(trained.build_model()))
    if precision == "int8":
        quantize_int8(fp32, folder / INT8_FILE)
    atomic_write_text(source, json.dumps(key, indent=2) + "\n")
    return target


def _slug(path: Path) -> str:
    import hashlib

    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


class OnnxRunner:
    """The part of a backend Runner that Predictor uses (``eval_step``), on an onnxruntime session.

    ``crf``: the model's CRF head, if it has one; ``model`` then offers its Viterbi ``decode`` (what
    ``tc.core.evaluation.decoder`` looks up). ``decoder``: a softmax model's constrained decoding
    (``decoding.word_decoder``). With neither, ``model`` is None and ids are the argmax."""

    def __init__(self, path: Path, threads: int | None = None, crf: LinearChainCRF | None = None,
                 decoder: Any = None) -> None:
        import onnxruntime as ort

        from tc.tasks.token_cls.crf_head import CrfDecoder

        self.model = CrfDecoder(crf) if crf is not None else decoder

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise TcError(f"{path}: onnxruntime cannot load it ({first_line(exc)})") from None
        self.path = path
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
               token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """(B, T, C) float32 logits for int token arrays of shape (B, T)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": np.zeros_like(input_ids) if token_type_ids is None else token_type_ids}
        return self.session.run(["logits"], {k: np.asarray(feeds[k], dtype=np.int64) for k in self.inputs})[0]

    def eval_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        out = self.logits(batch["input_ids"].numpy(), batch["attention_mask"].numpy(),
                          batch["token_type_ids"].numpy() if "token_type_ids" in batch else None)
        return torch.from_numpy(out)


def load_predictor(model_dir: str | Path, precision: str = "fp32", backend: str = "cpu",
                   checkpoint: str | Path | None = None, batch_size: int = 32,
                   overrides: Sequence[str] = (), calibrated: bool = True,
                   document_rules: tuple[str, ...] | None = None) -> Predictor:
    """A Predictor for ``precision``: tc's own runner for fp32, else onnxruntime (CPU) in its place;
    ``calibrated``: with the model dir's ``calibration.json`` temperature applied to the scores, if any;
    ``document_rules``: the rules documents are tagged with (None: the model dir's, else tc's default)."""
    from tc.tasks.token_cls.calibration import apply_calibration

    predictor = _load_predictor(model_dir, precision, backend, checkpoint, batch_size, overrides)
    if document_rules is not None:
        predictor.document_rules = document_rules
    if calibrated:
        try:
            apply_calibration(predictor)
        except BaseException:
            predictor.close()
            raise
    return predictor


def _load_predictor(model_dir: str | Path, precision: str, backend: str, checkpoint: str | Path | None,
                    batch_size: int, overrides: Sequence[str]) -> Predictor:
    from tc.tasks.token_cls.crf_head import crf_from_state
    from tc.tasks.token_cls.decoding import word_decoder
    from tc.tasks.token_cls.model_dir import load_trained_model
    from tc.tasks.token_cls.pooling import refuse_graph_export
    from tc.tasks.token_cls.predict import Predictor, open_backend
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

    if precision not in PRECISIONS:
        raise TcError(f"--precision {precision}: unknown (valid: {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return Predictor.from_model_dir(model_dir, backend=backend, checkpoint=checkpoint, batch_size=batch_size,
                                        overrides=overrides)
    if backend != "cpu":
        raise TcError(f"--precision {precision} runs on onnxruntime's CPU provider; use --backend cpu "
                      f"(or --precision fp32 on {backend})")
    if batch_size < 1:
        raise TcError(f"--batch-size {batch_size}: must be at least 1")
    _require_onnxruntime(precision)
    import torch

    hardware = open_backend("cpu", Path(model_dir), overrides, precision)  # threads, and the batches it feeds
    try:
        trained = load_trained_model(model_dir, checkpoint)
        refuse_graph_export(trained.config, f"--precision {precision}")
        encoder = WordPieceEncoder(trained.vocab_file, do_lower_case=trained.do_lower_case)
        runner = OnnxRunner(cached_onnx(trained, precision), threads=torch.get_num_threads(),
                            crf=crf_from_state(trained.state, str(trained.weights_path)),
                            decoder=word_decoder(trained.config, trained.label_map.labels, trained.label_scheme))
    except BaseException:
        hardware.teardown()
        raise
    return Predictor(trained, hardware, runner, encoder, batch_size)  # type: ignore[arg-type]


def _require_onnxruntime(precision: str) -> None:
    missing = [m for m in ("onnx", "onnxruntime") if not _importable(m)]
    if missing:
        raise TcError(f"--precision {precision} needs {' and '.join(missing)}: pip install 'tc[onnx]'")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
