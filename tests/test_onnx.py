"""ONNX export and onnxruntime inference (fp32 and dynamic int8) against tc's own torch model.

The fp32 ONNX graph must give tc's logits within ``LOGITS_ATOL`` on real test-set windows batched at
several sizes (dynamic batch and sequence axes); int8 must run through the same Predictor and agree
with fp32 on nearly every word; ``tc export --format onnx`` and ``tc predict --precision`` work end to end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ONE_THREAD, ROOT, error_line, read_jsonl, run_tc, without_modules

from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.model_dir import load_trained_model
from tc.tasks.token_cls.onnx_export import (
    FP32_FILE,
    INT8_FILE,
    LOGITS_ATOL,
    SOURCE_FILE,
    OnnxRunner,
    cached_onnx,
    load_predictor,
)
from tc.tasks.token_cls.predict import Predictor
from tc.tasks.token_cls.readers import load_split
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

DATA = ROOT / "data" / "BC5CDR-chem-IOB"
DOCS = [
    "Naloxone reverses the antihypertensive effect of clonidine.",
    "",
    "Lidocaine-induced cardiac asystole (after 5 mg/kg of cocaine) was observed in rats.",
    "Patients took aspirin, ibuprofen and naloxone twice daily.",
]


DOCUMENTED = {"precision-backend", "precision-extra"}
"""docs/errors.md rows tested here (the --precision refusals)."""


@pytest.fixture(scope="module")
def test_words() -> list[list[str]]:
    return [list(s.words) for s in load_split(DATA, "test")[:300]]


@pytest.fixture(scope="module")
def fp32(model_dir: Path) -> Iterator[Predictor]:
    with load_predictor(model_dir, "fp32", overrides=["runconfig.num_threads=1"]) as p:
        yield p


def test_onnx_logits_equal_tc_on_test_windows(model_dir: Path) -> None:
    torch.set_num_threads(1)
    trained = load_trained_model(model_dir)
    model = trained.build_model()
    runner = OnnxRunner(cached_onnx(trained, "onnx"), threads=1)
    encoder = WordPieceEncoder(trained.vocab_file, do_lower_case=trained.do_lower_case)
    dataset = TokenClsDataset(load_split(DATA, "test")[:300], encoder, trained.label_map,
                              trained.max_sequence_length, scheme=trained.label_scheme)
    shapes, worst, start = set(), 0.0, 0
    for size in (1, 7, 32, 64, 3):  # different batch sizes, and each batch its own padded length
        batch = dataset.collate(list(range(start, start + size)))
        start += size
        with torch.inference_mode():
            ref, _ = model({k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        got = runner.eval_step(batch)
        assert got.shape == ref.shape
        shapes.add(tuple(ref.shape[:2]))
        worst = max(worst, float((got - ref).abs().max()))
    assert len({s[1] for s in shapes}) >= 2 and len({s[0] for s in shapes}) >= 2  # dynamic length and batch
    assert worst <= LOGITS_ATOL, f"onnxruntime fp32 differs from tc by {worst:.2e} (tolerance {LOGITS_ATOL})"


def test_onnx_predictor_equals_fp32(model_dir: Path, fp32: Predictor, test_words: list[list[str]]) -> None:
    with load_predictor(model_dir, "onnx", overrides=["runconfig.num_threads=1"]) as onnx:
        assert isinstance(onnx.runner, OnnxRunner)
        assert onnx.predict_tokens(test_words) == fp32.predict_tokens(test_words)
        got, want = onnx.predict(DOCS), fp32.predict(DOCS)
    assert [[(e["start"], e["end"], e["type"]) for e in d] for d in got] == [
        [(e["start"], e["end"], e["type"]) for e in d] for d in want]
    assert any(want)


def test_int8_mostly_agrees_with_fp32(model_dir: Path, fp32: Predictor, test_words: list[list[str]]) -> None:
    with load_predictor(model_dir, "int8", overrides=["runconfig.num_threads=1"]) as int8:
        assert Path(int8.runner.path).name == INT8_FILE
        quantized = int8.predict_tokens(test_words)
        spans = int8.predict(DOCS)
    reference = fp32.predict_tokens(test_words)
    same = sum(a == b for q, r in zip(quantized, reference, strict=True) for a, b in zip(q, r, strict=True))
    total = sum(len(r) for r in reference)
    assert same / total >= 0.95, f"int8 agrees with fp32 on only {same}/{total} words"
    assert all(text[e["start"] : e["end"]] == e["text"] for text, doc in zip(DOCS, spans, strict=True) for e in doc)
    int8_size = (model_dir / "onnx" / INT8_FILE).stat().st_size
    assert int8_size < (model_dir / "onnx" / FP32_FILE).stat().st_size


def test_cache_is_reused_and_refreshed_when_weights_change(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("onnx"))
    first = cached_onnx(load_trained_model(copy), "onnx")
    stamp = first.stat().st_mtime_ns
    assert cached_onnx(load_trained_model(copy), "onnx").stat().st_mtime_ns == stamp  # reused
    weights = copy / "best_model.pt"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    again = cached_onnx(load_trained_model(copy), "onnx")
    assert again.stat().st_mtime_ns != stamp  # re-exported from the changed weights
    source = json.loads((copy / "onnx" / SOURCE_FILE).read_text())
    assert source["mtime_ns"] == weights.stat().st_mtime_ns


@pytest.mark.cli
def test_export_format_onnx(model_dir: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "exported"
    proc = run_tc("export", "--model-dir", str(model_dir), "--format", "onnx", str(out), check=True)
    assert str(out) in proc.stdout
    assert {FP32_FILE, INT8_FILE, "config.json", "vocab.txt", "model.safetensors"} <= {p.name for p in out.iterdir()}
    labels = json.loads((out / "config.json").read_text())["id2label"]
    for name in (FP32_FILE, INT8_FILE):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        for batch, length in ((1, 5), (3, 23)):
            ids = np.full((batch, length), 1000, dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            (logits,) = session.run(["logits"], feeds)
            assert logits.shape == (batch, length, len(labels))


@pytest.mark.cli
def test_predict_cli_precision(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    outputs = {}
    for precision in ("fp32", "onnx", "int8"):
        out = tmp_path / f"{precision}.jsonl"
        run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), "-q",
               "--precision", precision, *ONE_THREAD, check=True)
        outputs[precision] = read_jsonl(out)
    assert [r["text"] for r in outputs["int8"]] == DOCS

    def spans(records: list[dict]) -> list[list[tuple[int, int, str]]]:
        return [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in records]

    assert spans(outputs["onnx"]) == spans(outputs["fp32"])
    for got, want in zip(outputs["onnx"], outputs["fp32"], strict=True):
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]],
                                                                        abs=1e-3)


@pytest.mark.cli
def test_precision_needs_the_cpu_backend(model_dir: Path) -> None:
    proc = run_tc("predict", "--model-dir", str(model_dir), "--precision", "int8", "--backend", "cuda",
                  "-i", str(DATA / "test.tsv"))
    assert proc.returncode == 2
    assert "error: --precision int8 runs on onnxruntime's CPU provider; use --backend cpu" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.cli
def test_precision_without_its_extra_says_what_to_install(model_dir: Path, tmp_path: Path) -> None:
    proc = run_tc("predict", "--model-dir", str(model_dir), "--precision", "onnx", "-i", str(DATA / "test.tsv"),
                  env=without_modules(tmp_path / "site", "onnx", "onnxruntime"))
    assert proc.returncode == 2
    assert error_line(proc) == "--precision onnx needs onnx and onnxruntime: pip install 'tc[onnx]'"
