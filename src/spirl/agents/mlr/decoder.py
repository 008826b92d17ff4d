"""MLR's predictive latent decoder (SPEC §15.5, counts §15.10).

Input: T latents s_0..s_{T-1} (flattened encoder outputs, width d) and T actions. Each action is embedded by
Linear(A → d) on its one-hot vector; the tokens [s_0..s_{T-1}, e(a_0)..e(a_{T-1})] (2T of width d) get a fixed
sinusoid positional row, the same row i on s_i and on e(a_i), no token-type embedding. Two pre-LN blocks follow
(1 head, MLP hidden 2d, exact GELU, qkv without bias, no attention mask, no final LayerNorm); the output is the
state positions 0..T-1.

Initialisation: PyTorch's default (every Linear weight and bias ~ U(±1/√fan_in), LayerNorm (1, 0)); when a
torch.Generator is passed every draw comes from it and the global RNG is left untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spirl.agents.networks import _attention_weights, _build_context, _init_layers

POSITION_BASE = 10_000.0  # sinusoid base (standard Transformer)


def sinusoid_table(max_len: int, d: int) -> torch.Tensor:
    """Fixed positional table: pe[pos, 2i] = sin(pos / base^(2i/d)), pe[pos, 2i+1] = cos(pos / base^(2i/d)).

    Computed in float64, returned in the default dtype. Args: max_len ≥ 1 rows; d ≥ 1 columns. Returns: [max_len, d].
    """
    if max_len < 1 or d < 1:
        raise ValueError(f"max_len and d must be >= 1, got {max_len}, {d}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # [L, 1]
    pair = torch.div(torch.arange(d), 2, rounding_mode="floor").to(torch.float64)  # [d] i of column 2i / 2i+1
    angle = pos / POSITION_BASE ** (2.0 * pair / d)  # [L, d]
    even = torch.arange(d) % 2 == 0  # [d]
    table = torch.where(even, angle.sin(), angle.cos())  # [L, d]
    return table.to(torch.get_default_dtype())


class LatentBlock(nn.Module):
    """Pre-LN transformer block with one attention head: x = x + Attn(LN1 x); x = x + MLP(LN2 x).

    Attn(h) = proj(softmax(q kᵀ / √d) v) with q, k, v = h W_qkvᵀ (no bias); MLP = fc2(GELU(fc1 ·)), exact GELU.
    (4 + 2r)·d² + (6 + r)·d parameters for mlp_ratio r: 8d² + 8d for r = 2 (SPEC §15.10).
    """

    def __init__(self, d: int, mlp_ratio: int = 2, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d, bias=False)  # output columns: q, k, v
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, mlp_ratio * d)
        self.fc2 = nn.Linear(mlp_ratio * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, L, d]. Returns: [B, L, d]."""
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # 3 × [B, L, d]
        x = x + self.proj(_attention_weights(q, k, None) @ v)  # [B, L, d] (weights [B, L, L])
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))  # [B, L, d]


class PredictiveLatentDecoder(nn.Module):
    """Action embedding, sinusoid positions and `blocks` LatentBlocks over [states; actions] (SPEC §15.5).

    d is the flattened encoder output (3,136 for the Nature CNN, 1,024 for the DER CNN with pads); nothing depends
    on a fixed d. The positional table is a non-persistent buffer (a constant, rebuilt from d and max_len).
    """

    def __init__(self, d: int, n_actions: int, blocks: int = 2, mlp_ratio: int = 2, max_len: int = 128,
                 eps: float = 1e-5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if d < 1 or n_actions < 1 or blocks < 1 or mlp_ratio < 1 or max_len < 1:
            raise ValueError(f"d, n_actions, blocks, mlp_ratio and max_len must be >= 1, "
                             f"got {d}, {n_actions}, {blocks}, {mlp_ratio}, {max_len}")
        self.d, self.n_actions, self.max_len = d, n_actions, max_len
        with _build_context(generator):
            self.action_embed = nn.Linear(n_actions, d)
            self.blocks = nn.ModuleList(LatentBlock(d, mlp_ratio, eps) for _ in range(blocks))
        _init_layers(self, generator)
        self.register_buffer("pos_embed", sinusoid_table(max_len, d), persistent=False)  # [max_len, d]

    def _check_input(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        """Shapes and dtypes; the action range only for CPU tensors (no device sync elsewhere)."""
        if states.dim() != 3 or states.shape[-1] != self.d:
            raise ValueError(f"states must be [B, T, {self.d}], got {tuple(states.shape)}")
        if tuple(actions.shape) != tuple(states.shape[:2]):
            raise ValueError(f"actions must be [B, T] = {tuple(states.shape[:2])}, got {tuple(actions.shape)}")
        if states.shape[1] > self.max_len:
            raise ValueError(f"T = {states.shape[1]} exceeds max_len = {self.max_len}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"actions must be integer indices, got {actions.dtype}")
        if actions.device.type == "cpu" and actions.numel() and not (
                0 <= int(actions.min()) and int(actions.max()) < self.n_actions):
            raise ValueError(f"actions must lie in [0, {self.n_actions}), got [{int(actions.min())}, "
                             f"{int(actions.max())}]")

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Linear(A → d) of the one-hot actions. Args: actions [B, T] int. Returns: [B, T, d]."""
        one_hot = F.one_hot(actions.long(), self.n_actions).to(self.action_embed.weight.dtype)  # [B, T, A]
        return self.action_embed(one_hot)  # [B, T, d]

    def tokens(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The decoder input: [s_0 + pe_0, .., s_{T-1} + pe_{T-1}, e(a_0) + pe_0, .., e(a_{T-1}) + pe_{T-1}].

        Args: states [B, T, d]; actions [B, T] int in [0, n_actions). Returns: [B, 2T, d].
        """
        self._check_input(states, actions)
        pe = self.pos_embed[: states.shape[1]]  # [T, d]
        return torch.cat([states + pe, self.embed_actions(actions) + pe], dim=1)  # [B, 2T, d]

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted latents. Args: states [B, T, d] (masked latents); actions [B, T] int. Returns: [B, T, d]."""
        x = self.tokens(states, actions)  # [B, 2T, d]
        for block in self.blocks:
            x = block(x)  # [B, 2T, d]
        return x[:, : states.shape[1]]  # [B, T, d] the state positions
