"""Outputs that must not replace what they land on (issue #33, round three), with the real ``tc``.

One rule for every writer (``tc.core.fs.check_replace``): an output replaces only a regular file, and only
with ``--overwrite``; a FIFO or a device is never replaced, even with it. And never two outputs onto one
path: a BRAT folder names each file by its document's id, so an id that cannot be a file name, or two ids
that land on one file (equal, or equal up to case), are refused before anything is written
(``tc.tasks.token_cls.documents.brat.pair_paths``). Read-only folders and full disks: test_hardening_writes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import refused, run_tc, write

from tc.tasks.token_cls.documents import read_documents

pytestmark = pytest.mark.cli

DOCUMENTED = {"output-not-regular-file", "report-output-exists", "prepare-output-exists", "brat-id-duplicate",
              "brat-id-case", "brat-id-control-character", "brat-id-too-long", "brat-id-reserved",
              "brat-id-empty", "brat-id-hidden", "brat-id-path-separator", "brat-id-final-dot"}
"""docs/errors.md rows tested here (section Outputs and writes, round three)."""

TRAIN = "Naloxone\tB-Chemical\nreverses\tO\nclonidine\tB-Chemical\n.\tO\n\nAspirin\tB-Chemical\nhelps\tO\n"
ONLY_REGULAR = "not a regular file; tc writes only regular files"


def special_file(path: Path, kind: str) -> Path:
    """A FIFO, or a character device like /dev/null (made here: the real one is never put at risk)."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod is not permitted here")
    return path


def jsonl(path: Path, *records: dict[str, object]) -> Path:
    """A JSONL file of ``records`` (each gets a text unless it has one)."""
    return write(path, "".join(json.dumps({"text": "Naloxone reverses clonidine.", **r}) + "\n" for r in records))


Writer = Callable[[Path, Path, Path], tuple[list[str], Path, str]]
"""``(model_dir, tmp_path, target) -> (tc argv, the path the error names, how it ends)``."""

WRITERS: dict[str, tuple[str, Writer]] = {
    "predict": ("out.jsonl", lambda m, t, out: (
        ["predict", "--model-dir", str(m), "-i", str(jsonl(t / "in.jsonl", {})), "-o", str(out)], out,
        "choose another output file")),
    "predict-documents": ("out.xml", lambda m, t, out: (
        ["predict", "--model-dir", str(m), "-i", str(jsonl(t / "in.jsonl", {})), "-o", str(out)], out,
        "choose another output")),
    "report": ("out.png", lambda m, t, out: (["report", str(m), "-o", str(out)], out, "choose another output file")),
    "prepare": ("label2id.json", lambda m, t, out: (
        ["prepare", "token_cls", "--data-dir", str(write(t / "raw" / "train.tsv", TRAIN).parent), "--output-dir",
         str(out.parent)], out, "choose a new folder")),
}


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_fifo_or_device_is_never_replaced(writer: str, kind: str, trained: Path, tmp_path: Path) -> None:
    """``--overwrite`` onto a FIFO or a character device: refused in one line, the node still there."""
    name, build = WRITERS[writer]
    target = tmp_path / "out" / name
    target.parent.mkdir()
    special_file(target, kind)
    argv, named, choose = build(trained, tmp_path, target)
    flag = "--output-dir" if writer == "prepare" else "--output"
    what = "a FIFO" if kind == "fifo" else "a character device"
    assert refused(run_tc(*argv, "--overwrite", cwd=tmp_path)) == f"{flag} {named}: is {what}, {ONLY_REGULAR}, {choose}"
    mode = os.lstat(target).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)
    assert sorted(p.name for p in target.parent.iterdir()) == [name]


def test_report_replaces_a_file_only_with_overwrite(trained: Path, tmp_path: Path) -> None:
    """``tc report -o user.png`` keeps an existing file unless told; the model's own report.png is its own."""
    user = write(tmp_path / "user.png", b"mine")
    assert refused(run_tc("report", str(trained), "-o", str(user), cwd=tmp_path)) == (
        f"--output {user}: exists; pass --overwrite to replace it, or choose another output file")
    assert user.read_bytes() == b"mine"
    run_tc("report", str(trained), "-o", str(user), "--overwrite", cwd=tmp_path, check=True)
    assert user.read_bytes().startswith(b"\x89PNG")
    own = tmp_path / "model"
    own.mkdir()
    for item in trained.iterdir():
        if item.is_file():
            (own / item.name).write_bytes(item.read_bytes())
    for _ in range(2):  # tc report rewrites its own MODEL_DIR/report.png, by default or named
        run_tc("report", str(own), cwd=tmp_path, check=True)
        run_tc("report", str(own), "-o", str(own / "report.png"), cwd=tmp_path, check=True)


def test_prepare_keeps_a_label_map_it_did_not_write(tmp_path: Path) -> None:
    """``tc prepare --output-dir D`` with the user's D/label2id.json: refused before anything is written."""
    raw = write(tmp_path / "raw" / "train.tsv", TRAIN).parent
    out = tmp_path / "prepared"
    mine = write(out / "label2id.json", '{"O": 0}\n')
    argv = ("prepare", "token_cls", "--data-dir", str(raw), "--output-dir", str(out))
    assert refused(run_tc(*argv, cwd=tmp_path)) == (
        f"--output-dir {mine}: exists; pass --overwrite to replace it, or choose a new folder")
    assert mine.read_text() == '{"O": 0}\n'
    assert sorted(p.name for p in out.iterdir()) == ["label2id.json"]
    run_tc(*argv, "--overwrite", cwd=tmp_path, check=True)
    assert "B-Chemical" in json.loads(mine.read_text())


LONG = "x" * 300
BAD_IDS: dict[str, tuple[list[dict[str, object]], str]] = {
    "brat-id-duplicate": ([{"id": "a"}, {"id": "a"}],
                          "--output OUT/a.txt: IN:1: document 'a' and IN:2: document 'a' would both be written "
                          "there; give them different names"),
    "implicit-id-duplicate": ([{"id": "2"}, {}],  # a record without id is named by its line number
                              "--output OUT/2.txt: IN:1: document '2' and IN:2: document '2' would both be "
                              "written there; give them different names"),
    "brat-id-case": ([{"id": "PMID1"}, {"id": "pmid1"}],
                     "--output OUT/pmid1.txt: IN:1: document 'PMID1' and IN:2: document 'pmid1' would both be "
                     "written there (as OUT/PMID1.txt, on a case-insensitive file system); give them different names"),
    "unicode-normalisation": ([{"id": "caf\u00e9"}, {"id": "cafe\u0301"}],
                              "--output OUT/cafe\u0301.txt: IN:1: document 'caf\u00e9' and IN:2: document "
                              "'cafe\u0301' would both be written there (as OUT/caf\u00e9.txt, on a "
                              "case-insensitive file system); give them different names"),
    "brat-id-control-character": ([{"id": "a\x00b"}], "IN:1: document 'a\\x00b': id cannot name a BRAT file pair "
                                                      "in OUT (it holds a control character)"),
    "line-break": ([{"id": "a\nb"}], "IN:1: document 'a\\nb': id cannot name a BRAT file pair in OUT (it holds a "
                                     "control character)"),
    "brat-id-too-long": ([{"id": LONG}], f"IN:1: document {LONG[:40]!r}... (300 characters): id cannot name a BRAT "
                                         "file pair in OUT (<id>.txt would be 304 bytes, longer than the file "
                                         "system allows (255))"),
    "brat-id-reserved": ([{"id": "con"}], "IN:1: document 'con': id cannot name a BRAT file pair in OUT (it is a "
                                          "device name on Windows)"),
    "reserved-with-suffix": ([{"id": "NUL.tar"}], "IN:1: document 'NUL.tar': id cannot name a BRAT file pair in "
                                                  "OUT (it is a device name on Windows)"),
    "brat-id-empty": ([{"id": ""}], "IN:1: document '': id cannot name a BRAT file pair in OUT (it is empty)"),
    "brat-id-hidden": ([{"id": ".."}], "IN:1: document '..': id cannot name a BRAT file pair in OUT (a name "
                                       "starting with '.' is hidden)"),
    "parent-folder": ([{"id": "../x"}], "IN:1: document '../x': id cannot name a BRAT file pair in OUT (a name "
                                        "starting with '.' is hidden)"),
    "backslash": ([{"id": "a\\b"}], "IN:1: document 'a\\\\b': id cannot name a BRAT file pair in OUT (it holds a "
                                    "path separator)"),
    "brat-id-path-separator": ([{"id": "a/b"}], "IN:1: document 'a/b': id cannot name a BRAT file pair in OUT "
                               "(it holds a path separator)"),
    "brat-id-final-dot": ([{"id": "a."}], "IN:1: document 'a.': id cannot name a BRAT file pair in OUT (Windows "
                                          "drops a final dot or space)"),
}


@pytest.mark.parametrize("case", list(BAD_IDS))
def test_ids_that_cannot_name_brat_files_are_refused_before_writing(case: str, trained: Path,
                                                                    tmp_path: Path) -> None:
    """A JSONL input converted to a BRAT folder: one line naming the input line, and no file written."""
    records, message = BAD_IDS[case]
    source, out = jsonl(tmp_path / "in.jsonl", *records), tmp_path / "brat"
    proc = run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), "--output-format",
                  "brat", cwd=tmp_path)
    assert refused(proc) == message.replace("OUT", str(out)).replace("IN", str(source))
    assert not out.exists()


def test_ids_that_can_name_files_round_trip(trained: Path, tmp_path: Path) -> None:
    """Every other id is its file's name unchanged, so reading the folder back gives the same ids."""
    ids = ["PMID:123", "doc one", "北京-2", "a.b", "x" * 200, "-dash", "com10"]
    source, out = jsonl(tmp_path / "in.jsonl", *({"id": i} for i in ids)), tmp_path / "brat"
    run_tc("predict", "--model-dir", str(trained), "-i", str(source), "-o", str(out), "--output-format", "brat",
           cwd=tmp_path, check=True)
    assert sorted(d.id for d in read_documents(out)) == sorted(ids)
