"""Bad checkpoints: missing, truncated, not torch, another architecture, pickled code. One clear line,
an exit code, nothing run; and every damaged byte of a real checkpoint gives a CheckpointError.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from helpers import DATA, Case, Env, Payload, case_test, tiny_run, write

from tc.core.checkpoint import load_file
from tc.core.errors import CheckpointError


def truncated(env: Env) -> Path:
    data = env.ckpt.read_bytes()
    return write(env.tmp / "checkpoint_9.pt", data[: len(data) // 2])


def pickled_payload(env: Env) -> Path:
    path = env.tmp / "checkpoint_7.pt"
    torch.save({"model": {}, "x": Payload(env.tmp / "pwned")}, path)
    return path


CASES: dict[str, Case] = {
    "checkpoint-missing": Case(tiny_run(lambda e: ["--checkpoint-path", str(e.tmp / "checkpoint_9.pt")]),
                               lambda e: f"{e.tmp / 'checkpoint_9.pt'}: checkpoint not found"),
    "checkpoint-truncated": Case(tiny_run(lambda e: ["--mode", "eval", "--checkpoint-path", str(truncated(e))]),
                                 lambda e: f"{e.tmp / 'checkpoint_9.pt'}: corrupt or truncated checkpoint "
                                           "(PytorchStreamReader failed reading zip archive: failed finding central "
                                           "directory)",
                                 needs_training=True),
    "checkpoint-not-torch": Case(tiny_run(lambda e: ["--mode", "eval", "--checkpoint-path", str(DATA / "test.tsv")]),
                                 lambda e: f"{DATA / 'test.tsv'}: not a torch checkpoint file (the weights-only "
                                           "reader stopped: Unsupported operand",
                                 exact=False),
    "checkpoint-other-architecture": Case(
        tiny_run(lambda e: ["--mode", "eval", "--checkpoint-path", str(e.ckpt), "--set", "model.preset=minilm"]),
        lambda e: f"{e.ckpt}: shape mismatch for embeddings.word.weight: checkpoint [30522, 64] vs model "
                  "[30522, 384] and 29 more; missing keys: encoder.layers.2.",
        needs_training=True, exact=False),
    "checkpoint-pickle-payload": Case(
        tiny_run(lambda e: ["--mode", "eval", "--checkpoint-path", str(pickled_payload(e))]),
        lambda e: f"{e.tmp / 'checkpoint_7.pt'}: refusing to load: the file contains pickled code, not just tensors "
                  "(it references posix.system)"),
}
DOCUMENTED = set(CASES)
"""docs/errors.md rows tested here (section Checkpoints)."""


test_bad_input_gives_one_clear_line = case_test(CASES)


def test_every_damaged_checkpoint_byte_gives_a_checkpoint_error(tmp_path: Path) -> None:
    """Damage each byte of a real checkpoint and cut it short at many points: every variant loads or
    raises a CheckpointError. Damaged bytes surface inside torch.load as RuntimeError,
    UnicodeDecodeError, TypeError, struct.error..., none of which may escape."""
    import io

    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.arange(6.0)}, "global_step": 3}, buffer)
    good = buffer.getvalue()
    variants = [good[:cut] for cut in range(0, len(good), 7)]
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01 if at % 2 else 0xFF
        variants.append(bytes(damaged))
    path = tmp_path / "checkpoint_1.pt"
    for data in variants:
        path.write_bytes(data)
        with contextlib.suppress(CheckpointError):
            assert isinstance(load_file(path), dict)
