"""Constrained decoding of the softmax head (``model.decoding``, ``decoding.py``), on a real model directory.

The model is the tiny BERT after one step at a negligible learning rate: its words' argmax is near random,
so it spells invalid IOB2 (``O I-Chemical``) in many sentences, which is what the decoding is for. Checked:
``tc predict``'s labels are valid IOB2 everywhere, equal the argmax wherever the argmax is valid, and
elsewhere are the valid sequence with the largest logit sum (brute force over every sequence); the ONNX
session decodes the same; ``tc run --mode eval`` scores either decoding of one model directory; the
seed scheme keeps argmax; the refusals are one line each (``docs/errors.md``).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, ONE_THREAD, TINY, Case, case_test, run_tc, tiny_run

from tc.tasks.token_cls.predict import Predictor
from tc.tasks.token_cls.sentence import Sentence

NEAR_RANDOM = ("--set", "runconfig.max_steps=1", "--set", "optimizer.learning_rate=1e-9",
               "--set", "train_input.max_sentences=64", "--set", "eval_input.max_sentences=200")


def valid_iob2(labels: list[str]) -> bool:
    previous = "O"
    for label in labels:
        if label.startswith("I-") and previous[2:] != label[2:]:
            return False
        previous = label
    return True


@pytest.fixture(scope="module")
def near_random(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("decoding") / "model"
    run_tc("run", "--config", str(TINY), "--model-dir", str(model_dir), *NEAR_RANDOM, *ONE_THREAD, check=True)
    return model_dir


def sentences(n: int = 200) -> list[list[str]]:
    words, out = [], []
    for line in (DATA / "test.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split("\t")[0])
        elif words:
            out.append(words)
            words = []
    return out[:n]


def test_labels_are_valid_and_argmax_where_the_argmax_is(near_random: Path) -> None:
    assert json.loads((near_random / "tc_task.json").read_text())["model_config"]["decoding"] == "constrained"
    text = sentences()
    with Predictor.from_model_dir(near_random, overrides=["runconfig.num_threads=1"]) as predictor:
        labels = predictor.predict_tokens(text)
        ds = predictor._dataset([Sentence(tuple(words)) for words in text])
        model = predictor.trained.build_model()
        names = predictor.labels
    with torch.no_grad():
        logits = model(ds.collate(range(len(ds))))[0]
    rows = {r: logits[r, : int(ds.lengths[r])].numpy() for r in range(len(ds))}
    argmax = ds.word_predictions({r: x.argmax(-1) for r, x in rows.items()})
    invalid = [i for i, a in enumerate(argmax) if not valid_iob2(a)]
    assert len(invalid) > 10  # the near-random model spells invalid sequences: the check below can fail
    assert all(valid_iob2(x) for x in labels)
    assert all(x == a for i, (x, a) in enumerate(zip(labels, argmax, strict=True)) if i not in invalid)
    assert all(labels[i] != argmax[i] for i in invalid)
    # brute force on the short invalid sentences (one window each): the best valid sequence by logit sum
    starts = np.cumsum([0, *(len(words) for words in text)])  # each sentence's first word, all back to back
    checked = 0
    for i in (i for i in invalid if len(text[i]) <= 9 and ds.row_sentence.tolist().count(i) == 1):
        r = ds.row_sentence.tolist().index(i)
        scores = rows[r][ds.word_position[starts[i] : starts[i + 1]] - ds.row_offsets[r]]  # (words, C)
        best = max((seq for seq in itertools.product(range(len(names)), repeat=len(text[i]))
                    if valid_iob2([names[c] for c in seq])), key=lambda seq: scores[np.arange(len(seq)), seq].sum())
        assert labels[i] == [names[c] for c in best], text[i]
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("labels", [("B-Chemical", "I-Chemical", "O"), ("B-A", "B-B", "I-A", "I-B", "O"),
                                    ("O", "B", "I")])
def test_decoder_equals_viterbi_of_the_chain_on_every_row(labels: tuple[str, ...]) -> None:
    """``ConstrainedDecoder`` (argmax, numpy Viterbi on the rejected rows only) gives exactly what the CRF's
    torch Viterbi over every row gives with the same zero-score chain, ids and scores, from rows the
    constraints all reject to rows they all accept; non-word positions keep their argmax."""
    from tc.tasks.token_cls.crf import LinearChainCRF
    from tc.tasks.token_cls.crf_head import decode_batch
    from tc.tasks.token_cls.decoding import ConstrainedDecoder

    chain = LinearChainCRF.from_labels(list(labels))
    decoder = ConstrainedDecoder(chain)
    generator = torch.Generator().manual_seed(0)
    outside = labels.index("O")
    changed = 0
    for shift in (0.0, 2.0, 4.0, 8.0):
        logits = torch.randn(24, 40, len(labels), generator=generator)
        logits[..., outside] += shift
        batch = {"word_mask": torch.rand(24, 40, generator=generator) < 0.7}
        batch["word_mask"][3] = False  # a row without words
        ids, best = decoder.decode(logits, batch, True)
        expected, expected_best = decode_batch(chain, logits, batch, True)
        assert torch.equal(ids, expected) and best is not None and expected_best is not None
        torch.testing.assert_close(best, expected_best)
        assert torch.equal(ids[~batch["word_mask"]], logits.argmax(-1)[~batch["word_mask"]])
        changed += int((ids != logits.argmax(-1)).any(1).sum())
    assert changed > 10


@pytest.mark.cli
def test_onnx_session_decodes_the_same(near_random: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    source = tmp_path / "in.tsv"
    source.write_text("\n".join((DATA / "test.tsv").read_text(encoding="utf-8").splitlines()[:2000]) + "\n",
                      encoding="utf-8")
    for precision in ("fp32", "onnx"):
        run_tc("predict", "--model-dir", str(near_random), "--precision", precision, "-i", str(source),
               "-o", str(tmp_path / f"{precision}.tsv"), *ONE_THREAD, check=True)
    fp32, onnx = ((tmp_path / f"{p}.tsv").read_text(encoding="utf-8") for p in ("fp32", "onnx"))
    predicted = [line.split("\t")[-1] for line in fp32.splitlines() if line.strip()]
    assert onnx == fp32 and predicted.count("I-Chemical") > 20 and valid_iob2(predicted)


@pytest.mark.cli
def test_eval_scores_either_decoding_of_one_model_directory(near_random: Path, tmp_path: Path) -> None:
    """``tc run --mode eval --set model.decoding=D`` scores exactly the labels ``tc predict`` writes for a
    model directory whose tc_task.json says D: the test F1 recomputed from the predicted file equals the eval's,
    for both decodings, and only argmax spells invalid IOB2."""
    from tc.tasks.token_cls.metrics import entity_scores

    blocks = (DATA / "test.tsv").read_text(encoding="utf-8").split("\n\n")
    blocks = [b for b in blocks if b.strip() and not b.startswith("-DOCSTART-")][:200]
    source = tmp_path / "in.tsv"
    source.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    gold = [[line.split("\t")[-1] for line in b.splitlines()] for b in blocks]
    for decoding in ("constrained", "argmax"):
        proc = run_tc("run", "--mode", "eval", "--model-dir", str(near_random), "--set",
                      f"model.decoding={decoding}", "--set", "eval_input.max_sentences=200", *ONE_THREAD, "--json",
                      "--set", "model.document_rules=[]", check=True)  # predict's CoNLL input has no documents
        f1 = json.loads(proc.stdout.strip().splitlines()[-1])["f1"]
        model = tmp_path / decoding
        shutil.copytree(near_random, model)
        task = json.loads((model / "tc_task.json").read_text(encoding="utf-8"))  # what predict rebuilds
        task["model_config"]["decoding"] = decoding
        (model / "tc_task.json").write_text(json.dumps(task), encoding="utf-8")
        out = tmp_path / f"{decoding}.tsv"
        run_tc("predict", "--model-dir", str(model), "-i", str(source), "-o", str(out), *ONE_THREAD, check=True)
        predicted = [[line.split("\t")[-1] for line in b.splitlines()]
                     for b in out.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        assert [len(p) for p in predicted] == [len(g) for g in gold]
        assert f1 == pytest.approx(entity_scores(gold, predicted)["f1"], abs=1e-6), decoding
        assert all(valid_iob2(p) for p in predicted) == (decoding == "constrained"), decoding


@pytest.mark.cli
def test_dry_run_says_how_words_are_read() -> None:
    for extra, says in (((), "softmax head, constrained decoding"),
                        (("--set", "model.decoding=argmax"), "softmax head, argmax decoding"),
                        (("--set", "train_input.label_scheme=seed"), "softmax head, argmax decoding"),
                        (("--set", "model.head=crf"), "CRF head, Viterbi decoding"),
                        (("--set", "model.subword_pooling=last"),
                         "constrained decoding, words pooled from the last of their pieces")):
        proc = run_tc("run", "--config", str(TINY), "--dry-run", "--set", "train_input.max_sentences=20", *extra)
        assert proc.returncode == 0, proc.stderr
        assert says in " ".join(proc.stdout.split()), extra


@pytest.mark.cli
def test_seed_scheme_keeps_argmax(tmp_path: Path) -> None:
    run_tc("run", "--config", str(TINY), "--model-dir", str(tmp_path / "m"), *NEAR_RANDOM, *ONE_THREAD,
           "--set", "train_input.label_scheme=seed", check=True)
    config = json.loads((tmp_path / "m" / "tc_task.json").read_text())["model_config"]
    assert config["decoding"] == "argmax"


CASES: dict[str, Case] = {
    "decoding-argmax-crf": Case(tiny_run(["--set", "model.head=crf", "--set", "model.decoding=argmax"]),
                                lambda e: "model.decoding: argmax does not apply to model.head=crf, which decodes "
                                          "with Viterbi over its learned transitions; use the softmax head to read "
                                          "words by argmax"),
    "decoding-seed-scheme": Case(tiny_run(["--set", "model.decoding=constrained",
                                           "--set", "train_input.label_scheme=seed"]),
                                 lambda e: "model.decoding: constrained needs train_input.label_scheme typed (the "
                                           "seed scheme labels subword pieces and special tokens, which the chain "
                                           "over words forbids)"),
    "decoding-unknown": Case(tiny_run(["--set", "model.decoding=beam"]),
                             lambda e: "--set: model.decoding: Input should be 'constrained' or 'argmax' (got "
                                       "'beam')"),
}
DOCUMENTED = set(CASES)

test_bad_input_gives_one_clear_line = case_test(CASES)
