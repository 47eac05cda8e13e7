"""``tc export --format hf``: transformers loads the result and computes what tc computes.

The session's tiny model (``model_dir``, a real CLI run) is exported; parity is checked on real test-split
sentences: identical WordPiece ids from ``AutoTokenizer`` and logits within 1e-4 of tc's model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ONE_THREAD, ROOT, run_tc

from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.model_dir import load_trained_model
from tc.tasks.token_cls.predict import Predictor, split_words
from tc.tasks.token_cls.readers import read_conll

transformers = pytest.importorskip("transformers")

TEST_TSV = ROOT / "data" / "BC5CDR-chem-IOB" / "test.tsv"
RAW = [
    "Naloxone reverses the antihypertensive effect of clonidine.",
    "Lidocaine-induced cardiac asystole (5 mg/kg) — Café ÜBER naïve 北京 patients, e.g. aspirin-treated.",
    "Ca2+ and Na+/K+-ATPase; 3,4-methylenedioxymethamphetamine (MDMA) and H2O2!",
]


@pytest.fixture(scope="module")
def exported(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "hf_model"
    proc = run_tc("export", "--model-dir", str(model_dir), "--format", "hf", str(out), check=True)
    assert str(out) in proc.stdout
    return out


@pytest.fixture(scope="module")
def sentences() -> list:
    return read_conll(TEST_TSV)[:48]


def hf_model(path: Path) -> torch.nn.Module:
    return transformers.AutoModelForTokenClassification.from_pretrained(str(path)).eval()


def test_export_directory_layout(exported: Path, model_dir: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
            "special_tokens_map.json"} <= names
    config = json.loads((exported / "config.json").read_text())
    label2id = json.loads((model_dir / "label2id.json").read_text())
    assert config["label2id"] == label2id
    assert config["id2label"] == {str(i): label for label, i in label2id.items()}
    assert config["architectures"] == ["BertForTokenClassification"]
    assert (exported / "vocab.txt").read_bytes() == (model_dir / "vocab.txt").read_bytes()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_logits_match_transformers(exported: Path, model_dir: Path, sentences: list) -> None:
    trained = load_trained_model(model_dir)
    ours = trained.build_model()
    theirs = hf_model(exported)
    assert theirs.config.id2label == dict(enumerate(trained.label_map.labels))
    with Predictor.from_model_dir(model_dir, overrides=["runconfig.num_threads=1"]) as predictor:
        encoder = predictor.encoder
    dataset = TokenClsDataset(sentences, encoder, trained.label_map, trained.max_sequence_length)
    for start in range(0, len(dataset), 16):
        batch = dataset.collate(range(start, min(start + 16, len(dataset))))  # padded: masks matter
        with torch.no_grad():
            tc_logits, _ = ours(batch)
            hf_logits = theirs(input_ids=batch["input_ids"].long(), attention_mask=batch["attention_mask"].long(),
                               token_type_ids=batch["token_type_ids"].long()).logits
        real = batch["attention_mask"].bool()
        diff = (tc_logits - hf_logits).abs()[real].max().item()
        assert diff < 1e-4, f"rows {start}..: max abs logit difference {diff}"


def test_tokenizer_matches_tc_on_words_and_raw_text(exported: Path, model_dir: Path, sentences: list) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported))
    predictor = Predictor.from_model_dir(model_dir, overrides=["runconfig.num_threads=1"])
    for sentence in sentences:
        ids = tokenizer(list(sentence.words), is_split_into_words=True, add_special_tokens=False)["input_ids"]
        pieces, _ = predictor.encoder.encode_words(sentence.words)
        assert ids == pieces.tolist(), sentence.words
    for text in RAW:
        words = [w for w, _, _ in split_words(text)]
        assert tokenizer.tokenize(text) == [p for word in predictor.encoder.tokenize(words) for p in word], text


@pytest.mark.cli
def test_hf_labels_equal_tc_predict(exported: Path, model_dir: Path, sentences: list, tmp_path: Path) -> None:
    """The exported model tagging with its own tokenizer gives the labels ``tc predict`` writes: its words'
    logits decoded as the model card says (Viterbi under the IOB2 constraints, ``model.decoding:
    constrained``), which is the argmax wherever the argmax is a valid sequence."""
    from tc.tasks.token_cls.crf import LinearChainCRF

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported))
    theirs = hf_model(exported)
    id2label = theirs.config.id2label
    chain = LinearChainCRF.from_labels([id2label[i] for i in range(len(id2label))])
    short = [s for s in sentences if len(tokenizer(list(s.words), is_split_into_words=True)["input_ids"]) <= 64]
    source = tmp_path / "in.conll"
    source.write_text("\n\n".join("\n".join(s.words) for s in short) + "\n", encoding="utf-8")
    out = tmp_path / "out.conll"
    run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), *ONE_THREAD, check=True)
    tc_labels = [[line.split(" ")[1] for line in block.splitlines()]
                 for block in out.read_text(encoding="utf-8").strip().split("\n\n")]
    for sentence, expected in zip(short, tc_labels, strict=True):
        enc = tokenizer(list(sentence.words), is_split_into_words=True, return_tensors="pt")
        word_ids = enc.word_ids(0)
        first = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
        with torch.no_grad():
            words = theirs(**enc).logits[:, first]  # (1, W, C)
            ids = chain.decode(words, torch.ones(words.shape[:2], dtype=torch.bool))[0].tolist()
        assert [id2label[i] for i in ids] == expected
        argmax = [id2label[i] for i in words[0].argmax(-1).tolist()]
        if argmax != expected:  # only where the argmax is no valid IOB2
            assert any(b.startswith("I-") and a[2:] != b[2:] for a, b in zip(["O", *argmax[:-1]], argmax, strict=True))


@pytest.mark.cli
def test_cased_model_exports_a_cased_tokenizer(exported: Path, model_dir: Path, tmp_path: Path) -> None:
    cased = tmp_path / "cased"
    shutil.copytree(model_dir, cased)
    info = json.loads((cased / "tc_task.json").read_text())
    (cased / "tc_task.json").write_text(json.dumps({**info, "do_lower_case": False}))
    out = tmp_path / "cased_hf"
    run_tc("export", "--model-dir", str(cased), str(out), check=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    predictor = Predictor.from_model_dir(cased, overrides=["runconfig.num_threads=1"])
    for text in RAW:
        words = [w for w, _, _ in split_words(text)]
        ours = [p for word in predictor.encoder.tokenize(words) for p in word]
        assert tokenizer.tokenize(text) == ours, text
    uncased = transformers.AutoTokenizer.from_pretrained(str(exported))
    assert tokenizer.tokenize("ASPIRIN") != uncased.tokenize("ASPIRIN") == uncased.tokenize("aspirin")


@pytest.mark.cli
def test_export_refuses_to_clobber(exported: Path, model_dir: Path, tmp_path: Path) -> None:
    proc = run_tc("export", "--model-dir", str(model_dir), str(exported))
    assert proc.returncode == 2 and f"{exported}: directory is not empty" in proc.stderr
    proc = run_tc("export", "--model-dir", str(model_dir), "--overwrite", str(exported), check=True)
    assert json.loads((exported / "tc_export.json").read_text())["format"] == "hf"  # what --overwrite checks
    assert hf_model(exported).config.num_labels == len(json.loads((model_dir / "label2id.json").read_text()))
    missing = tmp_path / "missing"
    proc = run_tc("export", "--model-dir", str(missing), str(tmp_path / "x"))
    assert proc.returncode == 2 and f"{missing}: model directory not found" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_exported_weights_are_the_best_model(exported: Path, model_dir: Path) -> None:
    from safetensors.torch import load_file

    from tc.core.checkpoint import load_file as load_tc
    from tc.tasks.token_cls.hf_bert import to_hf_state_dict

    best = to_hf_state_dict(load_tc(model_dir / "best_model.pt")["model"])
    saved = load_file(str(exported / "model.safetensors"))
    assert saved.keys() == best.keys()
    assert all(np.array_equal(saved[k].numpy(), best[k].numpy()) for k in saved)
