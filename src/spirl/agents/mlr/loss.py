"""MLR's projection, predictor, target branch and loss (SPEC §15.6-15.8).

g, the projection, is the Q-head's first value and advantage layers with the noise off (their means μ only),
concatenated [value, advantage]: latent [.., d] -> [.., 2h], no ReLU. So g is part of the Q-head: MLR trains those
two layers too, without the RL path's 2^-½ gradient scale. q, the predictor, is Linear(2h -> 2h) with bias.

The target branch is a frozen copy of the encoder and of g. With `lag: one_step` (the released code) it is
overwritten with the online weights at the end of each update's forward, before the optimiser step, so an update's
target holds the online weights of one optimiser step earlier; with `lag: none` the target is the online encoder
and g themselves, under no_grad.

Loss per step and sample: ‖ŷ/‖ŷ‖ − ȳ/‖ȳ‖‖² = 2 − 2cos(ŷ, ȳ) (normalised with eps 1e-3 as F.normalize), times the
sample's PER weight, averaged over all T·B steps (`alive` zeroes steps, still counted in the mean: SPR's rule).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from spirl.agents.networks import _build_context, _init_layers
from spirl.agents.rainbow import DuelingC51Head

NORMALIZE_EPS = 1e-3  # F.normalize's eps in the released loss (models.py)
TARGET_LAGS = ("one_step", "none")


def projection(head: DuelingC51Head, latent: torch.Tensor) -> torch.Tensor:
    """g(latent) = [value_hidden μ(latent), advantage_hidden μ(latent)], no noise, no ReLU.

    Args: head, the Q-head whose first layers g is; latent [..., d]. Returns: [..., 2·hidden].
    """
    value, advantage = head.value_hidden, head.advantage_hidden
    return torch.cat([F.linear(latent, value.weight_mu, value.bias_mu),
                      F.linear(latent, advantage.weight_mu, advantage.bias_mu)], dim=-1)


class Predictor(nn.Module):
    """q: Linear(2h -> 2h) with bias, PyTorch's default init (drawn from `generator` when given)."""

    def __init__(self, width: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        with _build_context(generator):
            self.linear = nn.Linear(width, width)
        _init_layers(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [..., 2h]. Returns: [..., 2h]."""
        return self.linear(x)


class TargetBranch(nn.Module):
    """Frozen copies of the encoder and of g's two layers, synchronised with τ = 1 (a copy, not an EMA)."""

    def __init__(self, encoder: nn.Module, head: DuelingC51Head) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.value_hidden = copy.deepcopy(head.value_hidden)
        self.advantage_hidden = copy.deepcopy(head.advantage_hidden)
        self.requires_grad_(False)

    @torch.no_grad()
    def sync(self, encoder: nn.Module, head: DuelingC51Head) -> None:
        """Copy the online encoder's and g's weights into the target (τ = 1)."""
        self.encoder.load_state_dict(encoder.state_dict())
        self.value_hidden.load_state_dict(head.value_hidden.state_dict())
        self.advantage_hidden.load_state_dict(head.advantage_hidden.state_dict())

    def project(self, latent: torch.Tensor) -> torch.Tensor:
        """g_target(latent), as `projection` with the copied layers. Args: [..., d]. Returns: [..., 2h]."""
        return torch.cat([F.linear(latent, self.value_hidden.weight_mu, self.value_hidden.bias_mu),
                          F.linear(latent, self.advantage_hidden.weight_mu, self.advantage_hidden.bias_mu)], dim=-1)


def mlr_loss(predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
             alive: torch.Tensor | None = None) -> torch.Tensor:
    """L_MLR = mean over (b, t) of w_b · alive_bt · ‖ŷ/‖ŷ‖ − ȳ/‖ȳ‖‖² (SPEC §15.7).

    Args: predicted ŷ [B, T, P]; target ȳ [B, T, P] (no gradient is taken through it); weights [B] PER weights;
    alive [B, T] (1 = counted, 0 = zeroed) or None (every step counts: the released code). Returns: scalar.
    """
    if predicted.shape != target.shape or predicted.dim() != 3 or weights.shape != predicted.shape[:1]:
        raise ValueError(f"need predicted, target [B, T, P] and weights [B], got {tuple(predicted.shape)}, "
                         f"{tuple(target.shape)}, {tuple(weights.shape)}")
    a = F.normalize(predicted.float(), dim=-1, eps=NORMALIZE_EPS)
    b = F.normalize(target.detach().float(), dim=-1, eps=NORMALIZE_EPS)
    per_step = (a - b).pow(2).sum(dim=-1)  # [B, T]: 2 − 2cos for vectors longer than eps
    if alive is not None:
        per_step = per_step * alive.to(per_step.dtype)
    return (per_step * weights.to(per_step.dtype)[:, None]).mean()


def clip_groups(groups: dict[str, list[nn.Parameter]], max_norm: float) -> dict[str, float]:
    """Clip each group's gradient to L2 norm `max_norm` separately (SPEC §15.8: conv + Q-head, and the transformer;
    parameters in no group, the action embedding and q, are not clipped). Returns each group's norm before clipping.
    """
    return {name: float(nn.utils.clip_grad_norm_(params, max_norm)) for name, params in groups.items()}
