"""Small torch helpers shared by every model (the MAE, Wu's mask, the agents' encoders)."""

from __future__ import annotations

from torch import nn


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters (requires_grad) of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1
