"""BRAT pre-annotation (#30): ``tc predict`` turns plain ``.txt`` files into BRAT ``.ann`` files.

The output decides the format: a ``.txt`` with no ``.ann`` beside it, predicted into a ``.ann`` or a
folder, is one BRAT document without mentions (its id the file stem), and comes back as ``T`` lines whose
offsets index that text; a folder of such ``.txt`` files becomes a folder of ``.txt``/``.ann`` pairs
(the texts copied, so brat opens them). Every check runs the real ``tc predict`` with the session's tiny
model (conftest's ``model_dir``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, TC, read_jsonl, refused, run_tc

from tc.tasks.token_cls.documents import read_documents

CDR_TEST = ROOT / "data" / "BC5CDR-PubTator" / "test.pubtator"
T_LINE = re.compile(r"(T[0-9]+)\t(\S+) ([0-9]+) ([0-9]+)\t(.*)\Z")


def abstracts(n: int) -> list[str]:
    """The first ``n`` CDR test abstracts as plain text: title, a line break, abstract, a final line break."""
    texts = []
    for block in CDR_TEST.read_text(encoding="utf-8").split("\n\n")[:n]:
        title, abstract = (line.split("|", 2)[2] for line in block.split("\n")[:2])
        texts.append(f"{title}\n{abstract}\n")
    return texts


def predict(model_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is not None:
        return subprocess.run([TC, "predict", "--model-dir", str(model_dir), "-q", *ONE_THREAD, *args],
                              input=stdin, capture_output=True, text=True, timeout=600)
    return run_tc("predict", "--model-dir", str(model_dir), "-q", *ONE_THREAD, *args)


def predicted(model_dir: Path, *args: str) -> None:
    proc = predict(model_dir, *args)
    assert proc.returncode == 0, proc.stderr


def t_lines(ann: Path, text: str) -> list[tuple[int, int, str]]:
    """The ``(start, end, type)`` of every line of ``ann``, each checked to be a ``T`` line on ``text``."""
    spans = []
    lines = ann.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        match = T_LINE.match(line)
        assert match is not None, f"{ann}:{number}: not a BRAT T line: {line!r}"
        tid, kind, start, end, shown = match.groups()
        assert tid == f"T{number}"
        assert 0 <= int(start) < int(end) <= len(text) and text[int(start) : int(end)] == shown
        spans.append((int(start), int(end), kind))
    return spans


def read_back(ann: Path) -> list[tuple[int, int, str]]:
    (doc,) = read_documents(ann)
    assert doc.id == ann.stem
    return [m.span for m in doc.mentions]


@pytest.mark.cli
def test_a_txt_alone_into_ann_gets_t_lines_on_its_text(model_dir: Path, tmp_path: Path) -> None:
    text = abstracts(1)[0]
    txt = tmp_path / "8701013.txt"
    txt.write_text(text, encoding="utf-8")
    predicted(model_dir, "-i", str(txt), "-o", str(tmp_path / "8701013.ann"))
    ann = tmp_path / "8701013.ann"
    spans = t_lines(ann, text)
    assert spans and {kind for _, _, kind in spans} <= {"Chemical", "Disease"}  # the model tags something
    assert read_back(ann) == spans
    assert txt.read_text(encoding="utf-8") == text  # the input text is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["8701013.ann", "8701013.txt"]
    # the same mentions as that text tagged as a document of a BRAT folder
    folder = tmp_path / "as_folder"
    folder.mkdir()
    (folder / "8701013.txt").write_text(text, encoding="utf-8")
    predicted(model_dir, "-i", str(folder), "-o", str(tmp_path / "folder_out"))
    assert (tmp_path / "folder_out" / "8701013.ann").read_bytes() == ann.read_bytes()
    # into a folder (typed with a final /): the pair, the text copied beside its .ann
    predicted(model_dir, "-i", str(txt), "-o", f"{tmp_path / 'pre'}/")
    assert (tmp_path / "pre" / "8701013.txt").read_bytes() == txt.read_bytes()
    assert (tmp_path / "pre" / "8701013.ann").read_bytes() == ann.read_bytes()
    # into anything else a .txt with no .ann beside stays raw text, one document per line, as before
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    predicted(model_dir, "-i", "plain.txt", "-o", str(tmp_path / "lines.jsonl"))
    assert [r["text"] for r in read_jsonl(tmp_path / "lines.jsonl")] == text.splitlines()


@pytest.mark.cli
def test_a_folder_of_txt_becomes_a_folder_of_ann(model_dir: Path, tmp_path: Path) -> None:
    texts = abstracts(3)
    source = tmp_path / "texts"
    source.mkdir()
    names = ["alpha", "beta", "gamma"]
    for name, text in zip(names, texts, strict=True):
        (source / f"{name}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "preannotated"
    predicted(model_dir, "-i", str(source), "-o", f"{out}/")
    assert sorted(p.name for p in source.iterdir()) == [f"{n}.txt" for n in names]  # nothing written there
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}{s}" for n in names for s in (".ann", ".txt"))
    found = 0
    for name, text in zip(names, texts, strict=True):
        assert (out / f"{name}.txt").read_text(encoding="utf-8") == text
        spans = t_lines(out / f"{name}.ann", text)
        assert read_back(out / f"{name}.ann") == spans
        found += len(spans)
        alone = tmp_path / "alone" / f"{name}.ann"  # one file at a time gives the same .ann
        predicted(model_dir, "-i", str(source / f"{name}.txt"), "-o", str(alone))
        assert alone.read_bytes() == (out / f"{name}.ann").read_bytes()
    assert found >= 3
    again = predict(model_dir, "-i", str(source), "-o", str(out))
    assert refused(again) == f"--output {out / 'alpha.txt'}: exists; pass --overwrite to replace it, or choose " \
                             "another output"


@pytest.mark.cli
def test_an_existing_ann_is_replaced_only_with_overwrite(model_dir: Path, tmp_path: Path) -> None:
    text = abstracts(2)[1]
    txt = tmp_path / "doc.txt"
    txt.write_text(text, encoding="utf-8")
    ann = tmp_path / "other.ann"
    ann.write_text("T1\tChemical 0 4\tIndo\n", encoding="utf-8")
    proc = predict(model_dir, "-i", str(txt), "-o", str(ann))
    assert refused(proc) == f"--output {ann}: exists; pass --overwrite to replace it, or choose another output"
    assert ann.read_text(encoding="utf-8") == "T1\tChemical 0 4\tIndo\n"
    assert not (tmp_path / "other.txt").exists()
    predicted(model_dir, "-i", str(txt), "-o", str(ann), "--overwrite")
    assert (tmp_path / "other.txt").read_bytes() == txt.read_bytes()  # brat needs the text beside the .ann
    spans = t_lines(ann, text)
    assert spans and read_back(ann) == spans
    # once doc.ann exists, doc.txt is a BRAT pair whose annotations are the input: never written over
    predicted(model_dir, "-i", str(txt), "-o", str(tmp_path / "doc.ann"))
    before = (tmp_path / "doc.ann").read_bytes()
    proc = predict(model_dir, "-i", str(txt), "-o", str(tmp_path / "doc.ann"), "--overwrite")
    assert refused(proc) == (f"--output: {tmp_path / 'doc.ann'} is the input file {tmp_path / 'doc.ann'}; "
                             "choose another output file")
    assert (tmp_path / "doc.ann").read_bytes() == before


@pytest.mark.cli
def test_what_cannot_become_brat_is_refused_naming_the_flag(model_dir: Path, tmp_path: Path) -> None:
    text = abstracts(1)[0]
    (tmp_path / "notes.conll").write_text("Famotidine\nis\nused\n", encoding="utf-8")
    (tmp_path / "doc.txt").write_text(text, encoding="utf-8")
    ann = tmp_path / "out.ann"
    tail = "BRAT output needs a .txt file, a folder of them or document input (PubTator, BioC, BRAT or JSONL; " \
           "name it with --format), not"
    assert refused(predict(model_dir, "-o", str(ann), stdin=text)) == f"--output {ann}: {tail} --input -"
    assert refused(predict(model_dir, "-i", "notes.conll", "-o", str(ann))) == (
        f"--output {ann}: {tail} --input notes.conll")
    assert refused(predict(model_dir, "-i", "doc.txt", "--format", "text", "-o", str(ann))) == (
        f"--output {ann}: {tail} --format text")
    assert not ann.exists()
    # a text with a byte-order mark: the writer would rewrite it (without the mark), so not in place
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert refused(predict(model_dir, "-i", str(bom), "-o", str(tmp_path / "bom.ann"))) == (
        f"--output: {bom} is the --input file {bom}; choose another output file")
    assert bom.read_bytes() == b"\xef\xbb\xbf" + text.encode() and not (tmp_path / "bom.ann").exists()


@pytest.mark.cli
def test_a_txt_into_a_document_format_is_one_document_in_that_format(model_dir: Path, tmp_path: Path) -> None:
    """The output suffix decides, always: a .txt into .pubtator / .xml / .bioc.json is that text as one
    document (id: the stem) with the mentions the .ann route gives."""
    text = abstracts(2)[1]
    txt = tmp_path / "doc.txt"
    txt.write_text(text, encoding="utf-8")
    predicted(model_dir, "-i", str(txt), "-o", str(tmp_path / "pre" / "doc.ann"))
    expected = read_back(tmp_path / "pre" / "doc.ann")
    for name in ("doc.pubtator", "doc.xml", "doc.bioc.json"):
        predicted(model_dir, "-i", str(txt), "-o", str(tmp_path / name))
        (doc,) = read_documents(tmp_path / name)
        assert doc.id == "doc" and doc.text in (text, text.replace("\n", " ")), name  # PubTator: one line
        assert [m.span for m in doc.mentions] == expected, name
