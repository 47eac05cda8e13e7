"""Checkpoints, shared by every backend: ``files`` (names, atomic write, safe read, retention), ``state``
(parts, strict loading, RNG) and ``policy`` (where a run starts, what it saves after a step).

The file and state functions are re-exported here, so ``from tc.core.checkpoint import load_file``
reads as before; the policy is imported from ``tc.core.checkpoint.policy`` by the loop.
"""

from tc.core.checkpoint.files import FORMAT, atomic_save, checkpoint_name, list_checkpoints, load_file, prune
from tc.core.checkpoint.state import (
    PARTS,
    LoadReport,
    apply_model_state,
    capture_rng,
    describe_mismatch,
    match_state,
    parse_parts,
    restore_rng,
)

__all__ = [
    "FORMAT",
    "PARTS",
    "LoadReport",
    "apply_model_state",
    "atomic_save",
    "capture_rng",
    "checkpoint_name",
    "describe_mismatch",
    "list_checkpoints",
    "load_file",
    "match_state",
    "parse_parts",
    "prune",
    "restore_rng",
]
