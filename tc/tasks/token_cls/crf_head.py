"""The CRF as BERT's token head (``model.head: crf``): its loss, its decoding on the host, its file in exports.

Under either head the network emits per-position scores (the classifier's logits, (B, T, C)); with ``crf``
they are the emissions of a ``LinearChainCRF`` (crf.py) over the sentence's words, and:

* Training loss: the CRF's negative log-likelihood of the gold word tags, summed over the batch's rows and
  divided by its word count, times ``loss_weight``: the per-word scale of the softmax head's mean, which the
  core's micro-batch weighting by ``loss_tokens`` (words, in the typed scheme) assumes. Words are the first
  pieces of a row's own words: ``labels != -100``, and the ``word_mask`` batch key where the dataset adds one.
  With several corpora (``class_mask``) the classes a row's corpus does not annotate leave that row's chain,
  as they leave the softmax: their emissions are fixed at ``CONSTRAINED`` in the partition function (the gold
  path never uses them), so a corpus never teaches that its words are not of the types it does not annotate.
* Decoding (evaluation, ``tc predict``, ``tc serve``; on every backend, and on the ONNX/int8 sessions):
  ``tc.core.evaluation.run_rows`` hands each batch's host logits to the model's ``decode``; with a CRF that
  is Viterbi over the batch's ``word_mask`` positions, the CRF's few numbers (C x C + 2C) read onto the host.
  Non-word positions keep their argmax; nothing reads them (words are read on their first piece).
* Scores: a word's score is the softmax probability of its emission at the tag Viterbi chose (an entity's,
  the mean over its words, as with softmax). Simple and in [0, 1], but not the CRF's marginal probability:
  where the transitions overrode the emissions it is low, which is a fair flag for a doubtful word.
* Export: the ``crf.*`` tensors go to ``crf.safetensors`` beside the Hugging Face and ONNX files, which hold
  the emissions only; ``read_crf_file`` rebuilds the CRF from it (the transformers pipeline ignores it and
  decodes by argmax).

The seed label scheme is refused: it labels subword continuations and special tokens too (X, [CLS], [SEP]),
which a chain over words does not model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tc.core.errors import CheckpointError, ConfigError, first_line
from tc.tasks.token_cls.crf import CONSTRAINED, LinearChainCRF, compact, expand
from tc.tasks.token_cls.labels import IGNORE_INDEX

HEADS = ("softmax", "crf")
"""Values of ``model.head``."""
CRF_FILE = "crf.safetensors"
"""The CRF's tensors (``crf.start``, ``crf.transitions``, ``crf.end`` and the bool masks) beside an export."""
PREFIX = "crf."
WORD_MASK = "word_mask"
"""Batch key: (B, T) bool, True on the first piece of each of the row's own words (``TokenClsDataset``)."""


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def prepare_head(module: nn.Module, labels: Sequence[str], train_input: Any) -> nn.Module:
    """``module`` with its CRF (if it has one) constrained by ``labels`` (class ``i`` is ``labels[i]``).

    A model built from its architecture knows the number of classes but not their names; the task, which
    holds the label map, calls this on the module it trains. A checkpoint carries the masks itself.
    ``train_input`` (the section) is checked for a label scheme a chain over words cannot train on
    (``label_all_subwords`` with a CRF is refused where the task reads it)."""
    crf = getattr(module, "crf", None)
    if not isinstance(crf, LinearChainCRF):
        return module
    scheme = getattr(train_input, "label_scheme", "typed")
    if scheme != "typed":
        raise ConfigError(f"model.head: crf needs train_input.label_scheme typed, not {scheme!r} (the seed "
                          "scheme labels subword pieces and special tokens, which a CRF over words does not model)")
    crf.constrain(labels)
    return module


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def crf_loss(crf: LinearChainCRF, logits: Tensor, labels: Tensor, word_mask: Tensor | None = None,
             class_mask: Tensor | None = None) -> Tensor:
    """fp32 CRF negative log-likelihood over word positions, summed over rows, per word (see the module doc).

    The chain runs on the compacted words (a shorter scan) in eager CPU/CUDA code; elsewhere (compiled or
    traced graphs, where compacting would read a tensor value) straight on the positions, which gives the
    same numbers. With no word in the batch the loss is 0 with a grad_fn."""
    words = labels.ne(IGNORE_INDEX)
    if word_mask is not None:
        words = words & word_mask.bool()
    emissions = logits.float()
    if class_mask is not None:
        emissions = emissions.masked_fill(~class_mask.bool()[:, None, :], CONSTRAINED)  # (B, T, C)
    tags = labels.long()
    if emissions.device.type in ("cpu", "cuda") and not torch.compiler.is_compiling():
        emissions, mask = compact(emissions, words)
        tags = compact(tags, words)[0]
    else:
        mask = words
    nll = crf.nll(emissions, tags, mask)  # (B,)
    return nll.sum() / words.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def host_crf(crf: LinearChainCRF) -> LinearChainCRF:
    """``crf`` itself when it lives on the CPU in fp32, else an fp32 CPU copy (its tensors are tiny)."""
    state = crf.state_dict()
    if all(v.device.type == "cpu" for v in state.values()) and crf.start.dtype == torch.float32:
        return crf
    copy = LinearChainCRF(crf.num_tags)
    copy.load_state_dict({k: v.detach().to("cpu") for k, v in state.items()})
    return copy


def batch_words(logits: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    """(B, T) bool: the first pieces of the words of the rows ``logits`` (B, T, C) holds. A backend with static
    shapes (cerebras) pads a batch with rows it returns no logits for, so the mask is cut to ``logits``'s."""
    if WORD_MASK not in batch:
        raise ValueError(f"decoding words needs the batch key {WORD_MASK!r}: build the dataset with word_mask=True")
    return batch[WORD_MASK][: logits.shape[0]].to(device=logits.device, dtype=torch.bool)


def decode_batch(crf: LinearChainCRF, logits: Tensor, batch: Mapping[str, Tensor],
                 scores: bool = False) -> tuple[Tensor, Tensor | None]:
    """(B, T) int64 Viterbi tags at the batch's word positions (argmax elsewhere) and, with ``scores``, each
    position's softmax probability of its tag. ``logits`` and ``batch`` are on the host (what ``run_rows``
    has); the batch must carry ``word_mask`` (``TokenClsDataset(word_mask=True)``)."""
    words = batch_words(logits, batch)  # (B, T)
    host = host_crf(crf)
    with torch.no_grad():
        emissions, mask = compact(logits.float(), words)  # (B, W, C), (B, W)
        ids = expand(host.decode(emissions, mask), mask, words, fill=logits.argmax(-1))  # (B, T)
        best = logits.float().softmax(-1).gather(-1, ids[..., None])[..., 0] if scores else None
    return ids, best


class CrfDecoder:
    """``decode`` for a runner that has no torch module (an onnxruntime session emits the emissions): what
    ``run_rows`` looks up as ``runner.model.decode``."""

    def __init__(self, crf: LinearChainCRF) -> None:
        self.crf = host_crf(crf)

    def decode(self, logits: Tensor, batch: Mapping[str, Tensor], scores: bool = False) -> tuple[Tensor, Tensor | None]:
        return decode_batch(self.crf, logits, batch, scores)


# --------------------------------------------------------------------------------------------------
# State and files
# --------------------------------------------------------------------------------------------------


def split_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(everything else, the ``crf.*`` entries) of a model state dict."""
    rest = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    return rest, {k: v for k, v in state.items() if k.startswith(PREFIX)}


def crf_from_state(state: Mapping[str, Tensor], source: str = "state") -> LinearChainCRF | None:
    """The CRF whose ``crf.*`` tensors ``state`` holds (a model state dict or a ``crf.safetensors``), on the
    CPU in fp32; None when it holds none (a softmax model)."""
    own = {k.removeprefix(PREFIX): v for k, v in split_state(state)[1].items()}
    if not own:
        return None
    transitions = own.get("transitions")
    if transitions is None or transitions.dim() != 2:
        raise CheckpointError(f"{source}: the crf tensors have no (C, C) crf.transitions")
    crf = LinearChainCRF(transitions.shape[0])
    try:
        crf.load_state_dict({k: v.detach().to("cpu") for k, v in own.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: the crf tensors do not fit a CRF ({first_line(exc)})") from None
    return crf


def crf_file_bytes(crf_state: Mapping[str, Tensor]) -> bytes:
    """``crf.safetensors`` content for the ``crf.*`` entries of a model state dict (fp32 scores, bool masks)."""
    from safetensors.torch import save

    tensors = {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in crf_state.items()}
    return save(tensors, metadata={"format": "pt", "used_by": "tc (the transformers pipeline decodes by argmax)"})


def read_crf_file(path: str | Path) -> LinearChainCRF:
    """The CRF an export's ``crf.safetensors`` holds (for Viterbi over the exported model's logits)."""
    from safetensors.torch import load_file

    try:
        state: dict[str, Any] = load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError on a bad header, OSError on a missing file
        raise CheckpointError(f"{path}: cannot read the CRF ({first_line(exc)})") from None
    crf = crf_from_state(state, str(path))
    if crf is None:
        raise CheckpointError(f"{path}: holds no crf.* tensors")
    return crf
