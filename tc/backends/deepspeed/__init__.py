"""The ``deepspeed`` backend: data parallelism over several processes with DeepSpeed ZeRO (stages 0-3).

``tc run --backend deepspeed --num-processes N`` relaunches itself under torchrun (or DeepSpeed's own
launcher for multi-node hostfiles). Checkpoints are DeepSpeed directories (``checkpoint_<step>.ds/``,
resumable with optimizer state) plus a consolidated single-file tc checkpoint beside each one that the
cpu and cuda backends load. One concern per module:

* ``settings``: the ``deepspeed:`` YAML section
* ``env``: importing deepspeed (accelerator first), launcher detection, quieting it
* ``launcher``: how many ranks, and the torchrun / deepspeed-launcher command
* ``precision``: the bf16/fp16 switches, from the core precision resolver
* ``ds_config``: the DeepSpeed JSON config and the checks before any rank starts
* ``checkpoint_io``: ``.ds`` folders, their consolidated ``.pt`` twins, safe reading
* ``runner``: the engine's steps and state
* ``backend``: the Backend the loop talks to

Nothing here imports deepspeed or torch at module import: ``tc --help`` loads this plugin and must stay
fast.
"""

from tc.backends.deepspeed.backend import DeepSpeedBackend
from tc.backends.deepspeed.ds_config import check_settings, deepspeed_config, inference_config
from tc.backends.deepspeed.precision import precision_flags
from tc.backends.deepspeed.settings import DeepSpeedSettings
from tc.plugins import hookimpl

__all__ = ["DeepSpeedBackend", "DeepSpeedSettings", "check_settings", "deepspeed_config", "inference_config",
           "precision_flags", "register_backends"]


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(DeepSpeedBackend)
