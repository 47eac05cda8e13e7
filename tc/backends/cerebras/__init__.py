"""The ``cerebras`` backend: the real cerebras.pytorch 2.10 (cstorch) API, on a CS-X appliance
(``backend_type: CSX``) or on cstorch's own CPU backend (``backend_type: CPU``) for checks without one.

cstorch owns the hardware-facing pieces: ``cstorch.compile`` places the model, ``@cstorch.trace`` wraps
the train and eval steps, data flows through ``cstorch.utils.data.DataLoader`` + ``DataExecutor``, values
come back to the host only in ``@cstorch.step_closure``, and checkpoints are written with ``cstorch.save``.
One concern per module:

* ``settings``: the ``cerebras:`` YAML section
* ``precision``: half dtype, loss scaling, what cstorch's CPU backend refuses
* ``cluster``: CS-X cluster arguments and appliance flags
* ``state``: checkpoint state between cstorch's and torch's layouts
* ``optim``: cstorch optimizers and LR schedules from the shared ``OptimSpec``
* ``data``: plans as cstorch input streams, DataExecutors cut at the loop's ``Cadence``
* ``runner``: the compiled model and its traced steps
* ``mdl``: ``.mdl`` files, their ``.pt`` twins, host copies of device state
* ``modes``: ``compile_only`` / ``validate_only``
* ``backend``: the Backend the loop talks to

Nothing here imports cstorch or torch at module import: ``tc --help`` loads this plugin.
"""

from tc.backends.cerebras.backend import CerebrasBackend
from tc.backends.cerebras.optim import build_optimizer, build_scheduler
from tc.backends.cerebras.settings import CerebrasConfig
from tc.backends.cerebras.state import native_to_tc, optimizer_from_torch, optimizer_to_torch, schedule_state
from tc.plugins import hookimpl

__all__ = ["CerebrasBackend", "CerebrasConfig", "build_optimizer", "build_scheduler", "native_to_tc",
           "optimizer_from_torch", "optimizer_to_torch", "register_backends", "schedule_state"]


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(CerebrasBackend)
