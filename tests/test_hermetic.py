"""The README's two commands in the order a newcomer types them: ``make demo`` leaves ``./model_dir`` (and
a user may have ``runs/``, ``TC_*`` variables), then ``make test`` must pass and leave the checkout as it was.

The real thing, on a copy: the checkout's tracked files in a fresh git repository, with a seed-scheme
``model_dir/label2id.json`` (what once made ``test_label_all_subwords_is_on_by_default_where_it_applies``
fail after the demo), a ``runs/`` folder, and ``TC_LOAD_PLUGINS`` naming no installed plugin (it makes every
``tc`` command fail where it leaks through). A few of the suite's own tests run there, by pytest in a
subprocess; they pass, and ``git status --porcelain --ignored`` of the copy is unchanged, caches aside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CACHES
from helpers import ROOT

PROBES = [
    "tests/test_recipe_levers.py::test_label_all_subwords_is_on_by_default_where_it_applies",
    "tests/test_training.py::test_prepare_then_train_from_the_prepared_folder",
    "tests/test_plugins.py::test_example_plugin_is_listed",
]
"""Tests that once read what the demo left (a dry run of the default job), wrote into the checkout's data
folder's neighbourhood (prepare), or built a package in the source tree (the example plugin)."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=120).stdout


def status(repo: Path) -> list[str]:
    return [line for line in git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all").splitlines()
            if not CACHES & set(Path(line[3:]).parts)]


@pytest.mark.cli
@pytest.mark.slow
def test_suite_passes_after_the_demo_and_leaves_the_checkout_as_it_was(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    for name in git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        if name and (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    (copy / "model_dir").mkdir()
    (copy / "model_dir" / "label2id.json").write_text(json.dumps({"[PAD]": 0, "B": 1, "I": 2, "O": 3}))
    (copy / "runs" / "old").mkdir(parents=True)
    (copy / "runs" / "old" / "metrics.jsonl").write_text("{}\n")
    before = status(copy)
    assert [line.split()[1].split("/")[0] for line in before] == ["model_dir", "runs"], before

    env = {**os.environ, "PYTHONPATH": str(copy), "TC_LOAD_PLUGINS": "no-such-plugin", "TC_PROGRESS_SECONDS": "x"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *PROBES],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(PROBES)} passed" in proc.stdout, proc.stdout[-2000:]
    assert status(copy) == before
    assert json.loads((copy / "model_dir" / "label2id.json").read_text())["B"] == 1
