"""Export a trained model directory to the Hugging Face format, so the model leaves tc behind.

The result loads with ``AutoModelForTokenClassification.from_pretrained(out)`` and
``AutoTokenizer.from_pretrained(out)`` and gives the same logits and the same WordPiece tokens as tc:
weights are renamed (``model.to_hf_state_dict``), the config is translated (``model.bert_config_to_hf``)
and the tokenizer files state the casing the model was trained with. ONNX is not offered: torch's
exporters need the ``onnx``/``onnxscript`` packages, which tc does not depend on.

Every export carries a marker file (``tc_export.json``), and ``--overwrite`` replaces only a folder that
has it and holds nothing but what an export writes: never a model directory, a parent of the source, or a
folder with anything else in it. The folder is built beside the target, gets the user's umask (not
``mkdtemp``'s 0700) and is swapped in by renames, so an export appears complete or not at all.

A CRF head (``model.head: crf``) has no place in ``BertForTokenClassification``: ``model.safetensors`` holds
the encoder and the emission layer (still loadable, and the transformers pipeline decodes them by argmax),
and the CRF's tensors go to ``crf.safetensors`` beside it (``crf_head.read_crf_file`` reads them back).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tc
from tc.core.errors import TcError
from tc.core.fs import atomic_write_bytes, atomic_write_text, check_output, current_umask, fsync_dir
from tc.tasks.token_cls.crf_head import CRF_FILE
from tc.tasks.token_cls.decoding import word_chain
from tc.tasks.token_cls.model_dir import TrainedModel, load_trained_model

FORMATS = ("hf", "onnx")
"""onnx: the Hugging Face files plus model.onnx and model.int8.onnx (``onnx_export.write_onnx``)."""
MARKER = "tc_export.json"
"""Written into every export: ``--overwrite`` replaces a folder only when it holds this file."""
EXPORT_FILES = frozenset({"config.json", "model.safetensors", "vocab.txt", "special_tokens_map.json",
                          "tokenizer_config.json", "README.md", CRF_FILE, MARKER})
"""Everything an export writes; a folder holding anything else is never replaced."""
PIPELINE_SETTING = 'aggregation_strategy="first"'
"""The transformers pipeline setting that gives the word-level entities ``tc predict`` gives."""
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}


def export(model_dir: str | Path, out: str | Path, fmt: str = "hf", checkpoint: str | Path | None = None,
           overwrite: bool = False) -> Path:
    """Write ``model_dir``'s best (else newest) weights to ``out`` in format ``fmt``; returns ``out``.

    The directory appears complete or not at all: files are written beside it and renamed into place.
    """
    if fmt not in FORMATS:
        raise TcError(f"--format {fmt}: unknown export format (valid: {', '.join(FORMATS)})")
    out = Path(out).expanduser()
    check_output(out, inputs={"--model-dir": model_dir, "--checkpoint": checkpoint}, kind="dir", flag="OUT")
    _check_target(out, overwrite)
    trained = load_trained_model(model_dir, checkpoint)
    from tc.tasks.token_cls.pooling import refuse_graph_export

    refuse_graph_export(trained.config, f"--format {fmt}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise TcError(f"{out}: could not write the export ({exc.strerror or exc})") from None
    old = out.with_name(f"{staging.name}.old")
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; an export is shared like any folder
        write_hf(trained, staging)
        if fmt == "onnx":
            from tc.tasks.token_cls.onnx_export import write_onnx

            write_onnx(trained, staging)
        if out.exists():
            os.replace(out, old)  # only a checked earlier export (or an empty folder) gets here
        os.replace(staging, out)
        fsync_dir(out.parent)
    except OSError as exc:
        raise TcError(f"{out}: could not write the export ({exc.strerror or exc})") from None
    finally:
        for leftover in (staging, old):
            with contextlib.suppress(OSError):
                shutil.rmtree(leftover)
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    """An absent or empty folder is fine; a non-empty one only with ``--overwrite`` and only an export."""
    if out.exists() and not out.is_dir():
        raise TcError(f"{out}: exists and is not a directory")
    if not out.is_dir() or out.is_symlink():
        if out.is_symlink():
            raise TcError(f"{out}: is a symbolic link; give the real folder")
        return
    names = {p.name for p in out.iterdir()}
    if not names:
        return
    if not overwrite:
        raise TcError(f"{out}: directory is not empty (pass --overwrite to replace it)")
    if MARKER not in names:
        raise TcError(f"--overwrite: {out} was not written by tc export (no {MARKER}); tc replaces only its own "
                      "exports, choose a new folder")
    foreign = sorted(names - EXPORT_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
        raise TcError(f"--overwrite: {out} also holds files tc export did not write ({shown}); "
                      "move them or choose a new folder")


def write_hf(trained: TrainedModel, out: Path) -> None:
    """config.json, model.safetensors and the tokenizer files of a Hugging Face BertForTokenClassification."""
    from safetensors.torch import save

    from tc.tasks.token_cls.crf_head import crf_file_bytes, split_state
    from tc.tasks.token_cls.hf_bert import bert_config_to_hf, to_hf_state_dict

    model = trained.build_model()  # refuses weights that do not fit the saved config
    encoder_state, crf_state = split_state(model.state_dict())
    state = {k: v.detach().contiguous() for k, v in to_hf_state_dict(encoder_state).items()}
    atomic_write_bytes(out / "model.safetensors", save(state, metadata={"format": "pt"}))
    if crf_state:
        atomic_write_bytes(out / CRF_FILE, crf_file_bytes(crf_state))
    config = bert_config_to_hf(trained.config, trained.label_map.id2label)
    _write_json(out / "config.json", config | {"torch_dtype": "float32"})
    atomic_write_bytes(out / "vocab.txt", trained.vocab_file.read_bytes())
    special = _special_tokens(trained.vocab_file)
    _write_json(out / "special_tokens_map.json", special)
    _write_json(out / "tokenizer_config.json", tokenizer_config(trained, special))
    atomic_write_text(out / "README.md", model_card(trained))
    marker = {"exported_by": f"tc {tc.__version__}", "source": str(trained.weights_path),
              "format": "hf", "pipeline": {"aggregation_strategy": "first"}}
    if crf_state:
        marker["head"] = {"type": "crf", "file": CRF_FILE, "used_by_transformers": False}
    _write_json(out / MARKER, marker)


def _special_tokens(vocab_file: Path) -> dict[str, str]:
    """BERT's special tokens that this vocabulary actually has ([MASK] is optional for tagging)."""
    vocab = set(vocab_file.read_text(encoding="utf-8").splitlines())
    return {role: token for role, token in SPECIAL_TOKENS.items() if token in vocab}


def tokenizer_config(trained: TrainedModel, special: dict[str, str]) -> dict[str, Any]:
    """What ``AutoTokenizer`` needs to rebuild tc's WordPiece: class, casing, BERT's basic splitting."""
    return {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": trained.do_lower_case,
        "strip_accents": None,  # follows do_lower_case, as in tc's encoder
        "tokenize_chinese_chars": True,
        "model_max_length": trained.config.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
        **special,
    }


def model_card(trained: TrainedModel) -> str:
    labels = ", ".join(trained.label_map.labels)
    return (
        "# Token classification model exported by tc\n\n"
        f"Source: `{trained.weights_path}`  \nLabels: {labels}  \n"
        f"Trained with max_sequence_length {trained.max_sequence_length}; "
        f"lower-cased input: {trained.do_lower_case}.\n\n"
        "```python\nfrom transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline\n\n"
        "model = AutoModelForTokenClassification.from_pretrained(PATH)\n"
        "tokenizer = AutoTokenizer.from_pretrained(PATH)\n\n"
        "# word-level entities, as `tc predict` gives them (start, end, type, score):\n"
        f"ner = pipeline(\"token-classification\", model=PATH, {PIPELINE_SETTING})\n"
        "ner(\"Naloxone reverses the antihypertensive effect of clonidine.\")\n```\n\n"
        f"Pass `{PIPELINE_SETTING}`: the pipeline's default (`\"none\"`) returns one row per WordPiece "
        "fragment (`##ine`), and `\"simple\"` can split a word between two entities. tc reads each word's "
        "label on its first subword, which is what `\"first\"` does. The pipeline cannot take this from the "
        "model's config without running remote code, so it has to be passed. Texts longer than "
        f"{trained.max_sequence_length - 2} subwords: tc cuts them into windows of whole words, the pipeline "
        "truncates unless you also pass `stride`.\n"
        + (CRF_CARD if getattr(trained.config, "head", "softmax") == "crf" else "")
        + (CONSTRAINED_CARD if word_chain(trained.config, trained.label_map.labels, trained.label_scheme) else "")
    )


CONSTRAINED_CARD = (
    "\n## Decoding\n\ntc reads this model's words with constrained decoding (`model.decoding: constrained`): "
    "the label sequence with the largest sum of the words' first-subword logits among those IOB2 allows "
    "(no `I-X` after `O` or after another type), which is each word's argmax wherever that is already valid. "
    "The pipeline takes each word's argmax, so where that spells an `I-X` with no `B-X`/`I-X` before it, "
    "its entities differ from `tc predict`'s; `tc.tasks.token_cls.decoding.word_chain` builds the chain tc "
    "decodes with (`.decode(logits, mask)`).\n"
)


CRF_CARD = (
    f"\n## CRF head\n\nThis model was trained with a linear-chain CRF over words (`model.head: crf`). "
    "`model.safetensors` holds the encoder and the emission layer; transformers loads them and its pipeline "
    "decodes each word by argmax, which is **not** what tc predicts and can emit `I-X` after `O`. The CRF's "
    f"start/transition/end scores and constraint masks are in `{CRF_FILE}` (keys `crf.*`); tc decodes the "
    "logits of the words' first subwords with Viterbi under them (`tc.tasks.token_cls.crf_head.read_crf_file`).\n"
)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
