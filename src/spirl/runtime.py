"""Where and how torch runs, from the `runtime` section: device, threads, precision."""

from __future__ import annotations

import torch

from spirl.config import ConfigError, RuntimeParams


def setup_torch(runtime: RuntimeParams) -> torch.device:
    """Set the thread count and return the device (runtime.device: auto | cpu | cuda)."""
    torch.set_num_threads(runtime.torch_threads)
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device = 'cuda' but no CUDA device is visible; allowed here: auto, cpu")
    if runtime.device == "cpu" or (runtime.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_dtype(runtime: RuntimeParams, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on a GPU when runtime.precision is bf16; None (plain fp32) otherwise and on CPU."""
    if device.type == "cuda" and runtime.precision == "bf16":
        return torch.bfloat16
    return None
