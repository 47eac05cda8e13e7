"""What a checkpoint holds and how it applies to a live run: its parts, strict or non-strict model
loading (with a report of what did not fit), and the RNG state that makes a resume bit-identical."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tc.core.errors import CheckpointError

PARTS = ("model", "optimizer", "lr_scheduler", "global_step", "rng", "dataloader")


def parse_parts(spec: str) -> set[str]:
    """``"model,optimizer"`` or ``"all"`` -> the set of parts; unknown names are a clear error."""
    names = {p.strip() for p in spec.split(",") if p.strip()}
    if not names or names == {"all"}:
        return set(PARTS)
    unknown = sorted(names - set(PARTS))
    if unknown:
        raise CheckpointError(
            f"load_checkpoint_states: unknown part {unknown[0]!r} (valid: {', '.join(PARTS)}, all)"
        )
    return names


@dataclass
class LoadReport:
    """How a model state dict matched the model: what was skipped or left freshly initialised."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def match_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict, LoadReport]:
    """Split ``state`` into what fits ``model`` and a report of what does not."""
    own = model.state_dict()
    report = LoadReport()
    fitting = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            fitting[key] = value
    report.missing = [k for k in own if k not in state]
    return fitting, report


def apply_model_state(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    strict: bool,
    source: Path,
    labels: tuple[list[str] | None, list[str] | None] = (None, None),
    advice: str = "use --disable-strict-checkpoint-loading to load what fits",
) -> LoadReport:
    """Load ``state`` into ``model``; strict mode refuses any missing, unexpected or misshapen key, ending
    its message with ``advice`` (``tc run``'s flag by default: a caller without that flag says its own)."""
    fitting, report = match_state(model, state)
    if strict and not report.clean:
        raise CheckpointError(f"{source}: {describe_mismatch(report, labels)}; {advice}")
    if not fitting:
        raise CheckpointError(f"{source}: no tensor in the checkpoint fits this model (another architecture?)")
    model.load_state_dict(fitting, strict=False)
    return report


def describe_mismatch(report: LoadReport, labels: tuple[list[str] | None, list[str] | None]) -> str:
    bits = []
    if report.mismatched:
        key, theirs, ours = report.mismatched[0]
        bits.append(f"shape mismatch for {key}: checkpoint {list(theirs)} vs model {list(ours)}")
        ckpt_labels, model_labels = labels
        if ckpt_labels is not None and model_labels is not None and len(ckpt_labels) != len(model_labels):
            bits[-1] += f" (checkpoint has {len(ckpt_labels)} labels, model has {len(model_labels)})"
        if len(report.mismatched) > 1:
            bits[-1] += f" and {len(report.mismatched) - 1} more"
    if report.missing:
        bits.append(f"missing keys: {_few(report.missing)}")
    if report.unexpected:
        bits.append(f"unexpected keys: {_few(report.unexpected)}")
    return "; ".join(bits)


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
