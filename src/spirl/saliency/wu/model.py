"""Wu et al.'s attention network (SPEC §13): feature encoder Φ, mask generator Ψ, decoder; the transport of
features from a source to a target frame, and the training loss with its settings."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spirl.common.nn import conv_output_size

GRAY_SIZE = 84  # input side (DE-Rainbow's gray84 frame)
FEATURE_CHANNELS = 32  # channels of Φ(x)
MASK_SIZE = 7  # side of Φ(x) and Ψ(x) for an 84×84 input
ENCODER_LAYERS = ((1, 32, 8, 4), (32, 64, 4, 2), (64, 32, 3, 1))  # (in, out, kernel, stride) of Φ's and Ψ's convs
DECODER_LAYERS = ((32, 64, 3, 1), (64, 32, 4, 2), (32, 16, 8, 4))  # ConvTranspose2d (in, out, kernel, stride)


@dataclass(frozen=True)
class WuSettings:
    """Training settings of the Wu mask (SPEC §13 defaults).

    delta: δ, per-pixel squared errors of the transported reconstruction at or below it are ignored.
    mask_weight: λ_m, weight of the sparsity penalty mean(Ψ(x_t)).
    max_gap: largest t − s of a training pair (60: the released code's 60-step buffer).
    lr: Adam learning rate.
    batch_size: pairs per step.
    max_grad_norm: the gradient's global norm is clipped to it before each step (0.5: the released code).
    micro_batch: pairs per forward/backward pass; the batch's gradient is summed over them (speed only).
    plateau_window, plateau_tolerance: stop early when the mean loss and mean Ψ of the last `plateau_window` epochs
        both lie within `plateau_tolerance` (relative) of the `plateau_window` epochs before (0: never).
    """

    delta: float = 0.01
    mask_weight: float = 1e-3
    max_gap: int = 60
    lr: float = 1e-3
    batch_size: int = 64
    max_grad_norm: float = 0.5
    micro_batch: int = 8
    plateau_window: int = 0
    plateau_tolerance: float = 0.01

    def __post_init__(self) -> None:
        for name in ("delta", "mask_weight", "lr", "max_grad_norm", "plateau_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"WuSettings.{name} must be a finite number >= 0, got {value!r}")
        for name in ("lr", "max_grad_norm"):
            if getattr(self, name) == 0:
                raise ValueError(f"WuSettings.{name} must be > 0")
        for name in ("max_gap", "batch_size", "micro_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WuSettings.{name} must be a positive integer, got {value!r}")
        if isinstance(self.plateau_window, bool) or not isinstance(self.plateau_window, int) or self.plateau_window < 0:
            raise ValueError(f"WuSettings.plateau_window must be an integer >= 0, got {self.plateau_window!r}")


class WuOutput(NamedTuple):
    """One forward pass on (x_s, x_t) pairs.

    recon: x̂_t decoded from the transported features Φ̂, [B, 1, 84, 84].
    recon_auto: x̂_t^auto decoded from Φ(x_t), [B, 1, 84, 84].
    mask_t: Ψ(x_t) in [0, 1], [B, 1, 7, 7] (carries gradient).
    """

    recon: torch.Tensor
    recon_auto: torch.Tensor
    mask_t: torch.Tensor


class WuLossTerms(NamedTuple):
    """The loss and its three terms (scalars): total = transport + auto + mask_weight · sparsity."""

    total: torch.Tensor
    transport: torch.Tensor
    auto: torch.Tensor
    sparsity: torch.Tensor


def _encoder_convs() -> list[nn.Conv2d]:
    """The three convolutions shared by the layouts of Φ and Ψ (84 → 20 → 9 → 7)."""
    return [nn.Conv2d(c_in, c_out, k, s) for c_in, c_out, k, s in ENCODER_LAYERS]


def _encoder_sides(size: int) -> list[int]:
    """Spatial side after each encoder conv for an input of side `size` (84 → [20, 9, 7])."""
    sides = []
    for _, _, k, s in ENCODER_LAYERS:
        size = conv_output_size(size, k, s, 0)
        sides.append(size)
    return sides


@torch.no_grad()
def _init_orthogonal(module: nn.Module, generator: torch.Generator | None, unit_gain: tuple[nn.Module, ...] = ()
                     ) -> None:
    """Every conv / transposed-conv weight orthogonal, every bias 0; LayerNorm keeps (1, 0).

    Gain √2 (ReLU) except for the layers in `unit_gain` (gain 1). The weight is orthogonalised as the matrix
    [dim 0, rest] (out × in·k² for Conv2d, in × out·k² for ConvTranspose2d), drawn in module order from `generator`
    (None: the global RNG).
    """
    relu_gain = nn.init.calculate_gain("relu")
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            gain = 1.0 if any(layer is unit for unit in unit_gain) else relu_gain
            nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()


class WuAttention(nn.Module):
    """Φ (feature encoder), Ψ (mask generator) and the decoder of SPEC §13, for 1×84×84 inputs in [0, 1].

    Φ: Conv(1→32, k8, s4) ReLU, Conv(32→64, k4, s2) ReLU, Conv(64→32, k3, s1) ReLU → [B, 32, 7, 7].
    Ψ: the same three convs, each followed by LayerNorm over (C, H, W) (elementwise affine, PyTorch's default) and
       ReLU; Conv(32→1, k1); sigmoid → [B, 1, 7, 7].
    Decoder: ConvT(32→64, k3, s1) ReLU, ConvT(64→32, k4, s2) ReLU, ConvT(32→16, k8, s4) ReLU, Conv(16→1, k3, pad 1)
       → [B, 1, 84, 84], no output activation.
    Init (the released code): orthogonal weights with ReLU gain √2, except Ψ's output conv (the keypointer's 1×1
    conv: gain 1), zero biases, drawn from `generator` only (the global RNG is untouched when one is given).
    ReLUs run in place (no layer's backward needs a ReLU's input). `channels_last()` gives the fast CPU layout.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        sides = _encoder_sides(GRAY_SIZE)
        fork = torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()
        with fork:  # default layer init draws from the global RNG; it is overwritten below
            phi = _encoder_convs()
            relu = nn.ReLU(inplace=True)
            self.encoder = nn.Sequential(phi[0], relu, phi[1], relu, phi[2], relu)
            psi: list[nn.Module] = []
            for conv, side in zip(_encoder_convs(), sides, strict=True):
                psi += [conv, nn.LayerNorm([conv.out_channels, side, side]), relu]
            mask_out = nn.Conv2d(FEATURE_CHANNELS, 1, 1)
            self.mask_generator = nn.Sequential(*psi, mask_out, nn.Sigmoid())
            dec: list[nn.Module] = []
            for c_in, c_out, k, s in DECODER_LAYERS:
                dec += [nn.ConvTranspose2d(c_in, c_out, k, s), relu]
            self.decoder = nn.Sequential(*dec, nn.Conv2d(DECODER_LAYERS[-1][1], 1, 3, padding=1))
        _init_orthogonal(self, generator, unit_gain=(mask_out,))

    def channels_last(self) -> WuAttention:
        """The model with its 4-D weights in channels-last layout (in place; returns self). On one CPU core the
        decoder's 84×84 layers run about 1.7 times faster in it (bench/wu.py); results equal the default layout's
        up to float rounding."""
        return self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Φ(x). Args: x [B, 1, 84, 84] in [0, 1]. Returns: [B, 32, 7, 7] (>= 0)."""
        return self.encoder(_check_gray(x))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Ψ(x). Args: x [B, 1, 84, 84] in [0, 1]. Returns: [B, 1, 7, 7] in [0, 1]."""
        return self.mask_generator(_check_gray(x))

    def decode(self, phi: torch.Tensor) -> torch.Tensor:
        """Decoder. Args: phi [B, 32, 7, 7]. Returns: [B, 1, 84, 84]."""
        return self.decoder(phi)

    def forward(self, x_s: torch.Tensor, x_t: torch.Tensor) -> WuOutput:
        """Reconstruct x_t through the transport (x̂_t) and from its own features (x̂_t^auto).

        The source frame's Φ and Ψ are evaluated without gradient (the transport detaches them anyway).
        Args: x_s, x_t [B, 1, 84, 84] in [0, 1]. Returns: WuOutput (recon, recon_auto [B, 1, 84, 84]; mask_t
        [B, 1, 7, 7]).
        """
        with torch.no_grad():
            phi_s, psi_s = self.features(x_s), self.mask(x_s)  # [B, 32, 7, 7], [B, 1, 7, 7]
        phi_t, psi_t = self.features(x_t), self.mask(x_t)
        mixed = transport(phi_s, psi_s, phi_t, psi_t)  # [B, 32, 7, 7]
        both = self.decode(torch.cat([mixed, phi_t]))  # [2B, 1, 84, 84]
        recon, recon_auto = both.chunk(2)
        return WuOutput(recon, recon_auto, psi_t)


def _check_gray(x: torch.Tensor) -> torch.Tensor:
    """x unchanged if it is a float [B, 1, 84, 84], else ValueError."""
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, GRAY_SIZE, GRAY_SIZE) or not x.is_floating_point():
        raise ValueError(f"input must be float [B, 1, {GRAY_SIZE}, {GRAY_SIZE}], got {x.dtype} {tuple(x.shape)}")
    return x


def transport(phi_s: torch.Tensor, psi_s: torch.Tensor, phi_t: torch.Tensor, psi_t: torch.Tensor) -> torch.Tensor:
    """Φ̂ = (1 − Ψ(x_s))·(1 − Ψ(x_t))·Φ(x_s) + Ψ(x_t)·Φ(x_t), with Φ(x_s) and Ψ(x_s) detached.

    Gradient reaches phi_t and psi_t only (psi_t through both terms).
    Args: phi_s, phi_t [B, C, h, w]; psi_s, psi_t [B, 1, h, w] (broadcast over C). Returns: [B, C, h, w].
    """
    phi_s, psi_s = phi_s.detach(), psi_s.detach()
    return (1.0 - psi_s) * (1.0 - psi_t) * phi_s + psi_t * phi_t


def thresholded_squared_error(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """mean over all elements of e·[e > δ], e = (pred − target)² (errors at or below δ count as 0, not dropped).

    Args: pred, target of equal shape. Returns: scalar.
    """
    err = (pred - target) ** 2
    return torch.where(err > delta, err, torch.zeros_like(err)).mean()


def wu_loss(out: WuOutput, x_t: torch.Tensor, settings: WuSettings) -> WuLossTerms:
    """L = mean(e·[e > δ]) (e = (x̂_t − x_t)²) + mean((x̂_t^auto − x_t)²) + λ_m · mean(Ψ(x_t)).

    Args: out the forward pass on the pairs; x_t [B, 1, 84, 84] the targets. Returns: WuLossTerms (scalars).
    """
    transported = thresholded_squared_error(out.recon, x_t, settings.delta)
    auto = F.mse_loss(out.recon_auto, x_t)
    sparsity = out.mask_t.mean()
    return WuLossTerms(transported + auto + settings.mask_weight * sparsity, transported, auto, sparsity)
