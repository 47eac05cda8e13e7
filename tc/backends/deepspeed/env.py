"""How tc meets the deepspeed library: importing it with its accelerator chosen first, telling a launched
rank from a plain process, and keeping DeepSpeed's prints off stdout (which may carry ``--json`` output).

Nothing here imports deepspeed or torch at module import: ``tc --help`` loads this plugin and must stay
fast. DeepSpeed picks its accelerator when first imported, so ``DS_ACCELERATOR=cpu`` is set before that
on machines without CUDA.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "deepspeed not installed (pip install 'tc[deepspeed]')"
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
"""Set by torchrun and the deepspeed launcher: a process that has them is a rank and never relaunches."""


def under_launcher() -> bool:
    return any(key in os.environ for key in LAUNCHER_ENV)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def import_deepspeed() -> Any:
    """Import deepspeed with its accelerator chosen first (it detects one once, at import)."""
    if "deepspeed" not in sys.modules and "DS_ACCELERATOR" not in os.environ and not cuda_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed

    return deepspeed


def fp32(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of ``tensor``, floating point as fp32 (consolidated weights are plain fp32)."""
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.is_floating_point() else tensor


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow DeepSpeed's prints and progress bars (stdout may carry ``--json`` output)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def silence_deepspeed() -> None:
    """DeepSpeed's per-rank deprecation warnings from torch say nothing a tc user can act on."""
    import logging

    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.*deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*reduce_scatter_tensor.*deprecated", category=FutureWarning)
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)

