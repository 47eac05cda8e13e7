"""Export a trained model directory to the Hugging Face format, so the model leaves tc behind.

The result loads with ``AutoModelForTokenClassification.from_pretrained(out)`` and
``AutoTokenizer.from_pretrained(out)`` and gives the same logits and the same WordPiece tokens as tc:
weights are renamed (``model.to_hf_state_dict``), the config is translated (``model.bert_config_to_hf``)
and the tokenizer files state the casing the model was trained with. ONNX is not offered: torch's
exporters need the ``onnx``/``onnxscript`` packages, which tc does not depend on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tc.core.errors import TcError
from tc.tasks.token_cls.predict import TrainedModel, load_trained_model

FORMATS = ("hf",)
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
    _check_target(out, overwrite)
    trained = load_trained_model(model_dir, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_hf(trained, staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except OSError as exc:
        raise TcError(f"{out}: could not write the export ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TcError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TcError(f"{out}: directory is not empty (pass --overwrite to replace it)")


def write_hf(trained: TrainedModel, out: Path) -> None:
    """config.json, model.safetensors and the tokenizer files of a Hugging Face BertForTokenClassification."""
    from safetensors.torch import save_file

    from tc.tasks.token_cls.hf_bert import bert_config_to_hf, to_hf_state_dict

    model = trained.build_model()  # refuses weights that do not fit the saved config
    state = {k: v.detach().contiguous() for k, v in to_hf_state_dict(model.state_dict()).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = bert_config_to_hf(trained.config, trained.label_map.id2label)
    _write_json(out / "config.json", config | {"torch_dtype": "float32"})
    shutil.copyfile(trained.vocab_file, out / "vocab.txt")
    special = _special_tokens(trained.vocab_file)
    _write_json(out / "special_tokens_map.json", special)
    _write_json(out / "tokenizer_config.json", tokenizer_config(trained, special))
    (out / "README.md").write_text(model_card(trained), encoding="utf-8")


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
        "```python\nfrom transformers import AutoModelForTokenClassification, AutoTokenizer\n\n"
        "model = AutoModelForTokenClassification.from_pretrained(PATH)\n"
        "tokenizer = AutoTokenizer.from_pretrained(PATH)\n```\n"
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
