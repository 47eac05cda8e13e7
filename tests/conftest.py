"""Shared helpers: run the real ``tc`` console script in a subprocess, install real plugin packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TC = str(Path(sys.executable).with_name("tc"))
TINY = ROOT / "configs" / "tiny_token_cls.yaml"


def run_tc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``tc ARGS`` as a user would; returns the finished process (stdout/stderr as text)."""
    full_env = {**os.environ, "COLUMNS": "200", "TC_CACHE_DIR": os.environ.get("TC_CACHE_DIR", "")}
    full_env.pop("TC_CACHE_DIR") if not full_env["TC_CACHE_DIR"] else None
    full_env.update(env or {})
    proc = subprocess.run([TC, *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def weights(path: Path) -> dict[str, Any]:
    """The model weights (name -> tensor) of a tc checkpoint file."""
    import torch

    return torch.load(path, weights_only=True)["model"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pip_install_target(package: Path, target: Path) -> None:
    """pip-install ``package`` into ``target`` (a folder later put on PYTHONPATH), offline-safe."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    return ["--task", "token_cls", "--config", str(TINY)]
