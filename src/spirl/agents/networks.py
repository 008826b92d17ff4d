"""Feature encoders of the agents (SPEC §7.1-4, §9.4): patch-embedding transformer (SPIRL) and pixel CNN (DE-Rainbow).

Both encoders map one stacked observation to a flat feature vector (`output_size` wide) that the Q-head consumes.

Initialisation (both encoders): every Linear/Conv2d weight and bias ~ U(±1/√fan_in), which is PyTorch's default
layer init (what the released code used), LayerNorm (1, 0), the [cls] and [pad] tokens ~ N(0, TOKEN_INIT_STD).
When a torch.Generator is passed every draw comes from it and the global RNG is left untouched.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from spirl.common.nn import conv_output_size
from spirl.params import PADDINGS, POOLS  # agent.padding, agent.pool

TOKEN_INIT_STD = 0.02  # ViT/MAE convention for learned tokens ([cls], [pad])


def _build_context(generator: torch.Generator | None) -> contextlib.AbstractContextManager:
    """Layer construction draws from the global RNG; fork it away when an explicit generator is used."""
    return torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()


@torch.no_grad()
def _init_layers(module: nn.Module, generator: torch.Generator | None) -> None:
    """Linear/Conv2d weight and bias ~ U(±1/√fan_in) (PyTorch's default), LayerNorm (1, 0), drawn from `generator`."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            bound = 1.0 / math.sqrt(layer.weight[0].numel())  # fan_in = in_features (· kernel area)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(layer, nn.LayerNorm):
            layer.weight.fill_(1.0)
            layer.bias.zero_()


def _attention_weights(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ / √d) over the attended keys, written out: torch.func.vmap batches it over stacked seeds
    (F.scaled_dot_product_attention has no vmap batching rule in torch 2.13), and Fig. 6 reads it.

    Args: q [N, H, Lq, d]; k [N, H, L, d]; key_mask [N, L] bool (True = attended) or None. Returns: [N, H, Lq, L].
    """
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [N, H, Lq, L]
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return logits.softmax(dim=-1)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block, optionally residual-free (paper Tab. 13: no residual connections).

    residual=False: S1 = MHSA(LN1 S0), S2 = MLP(LN2 S1); residual=True: S1 = S0 + MHSA(LN1 S0), S2 = S1 + MLP(LN2 S1).
    MLP = fc2(GELU(fc1 ·)) with exact GELU.
    Attention runs fused (F.scaled_dot_product_attention) unless `written_out_attention` is set (the stacked
    seeds of spirl.agents.multiseed, under vmap): the same maths, equal to float rounding.
    """

    written_out_attention = False

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float, residual: bool) -> None:
        super().__init__()
        self.heads = heads
        self.residual = residual
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)  # output columns: q, k, v (heads contiguous in each)
        self.attn_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def _qkv(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head q, k, v of LN1(s).

        Args: s [N, L, D]. Returns: 3 × [N, H, L, D/H].
        """
        n, length, d = s.shape
        qkv = self.qkv(self.norm1(s)).reshape(n, length, 3, self.heads, d // self.heads)  # [N, L, 3, H, D/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × [N, H, L, D/H]
        return q, k, v

    def forward(self, s: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Args: s [N, L, D]; key_mask [N, L] bool (True = key is attended) or None. Returns: [N, L, D]."""
        q, k, v = self._qkv(s)  # 3 × [N, H, L, D/H]
        if self.written_out_attention:
            att = _attention_weights(q, k, key_mask) @ v  # [N, H, L, D/H]
        else:
            mask = None if key_mask is None else key_mask[:, None, None, :]  # [N, 1, 1, L]
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, H, L, D/H]
        att = self.attn_out(att.transpose(1, 2).reshape(s.shape))  # [N, L, D]
        s1 = s + att if self.residual else att
        mlp = self.fc2(F.gelu(self.fc1(self.norm2(s1))))  # [N, L, D]
        return s1 + mlp if self.residual else mlp

    def forward_first_row(self, s: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Row 0 of `forward(s, key_mask)`, computed from row 0's query alone (exact: a row's output depends on the
        other rows only through their keys and values, and the MLP acts row by row). SPIRL's [cls] pooling reads
        nothing else, so its one block costs O(L) attention instead of O(L²) and one MLP row instead of L.

        Args: s [N, L, D]; key_mask [N, L] bool or None. Returns: [N, D].
        """
        n, length, d = s.shape
        dh = d // self.heads
        h = self.norm1(s)  # [N, L, D]
        q = F.linear(h[:, 0], self.qkv.weight[:d], self.qkv.bias[:d]).reshape(n, self.heads, 1, dh)  # [N, H, 1, dh]
        kv = F.linear(h, self.qkv.weight[d:], self.qkv.bias[d:]).reshape(n, length, 2, self.heads, dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 × [N, H, L, dh]
        att = (_attention_weights(q, k, key_mask) @ v).reshape(n, d)  # [N, D] (heads concatenated)
        att = self.attn_out(att)  # [N, D]
        s1 = s[:, 0] + att if self.residual else att
        mlp = self.fc2(F.gelu(self.fc1(self.norm2(s1))))  # [N, D]
        return s1 + mlp if self.residual else mlp

    def query_attention(self, s: torch.Tensor, key_mask: torch.Tensor | None, row: int) -> torch.Tensor:
        """Softmax attention weights of query row `row` over all keys (the weights forward uses).

        Args: s [N, L, D]; key_mask [N, L] bool or None; row index. Returns: [N, H, L] (rows sum to 1).
        """
        q, k, _ = self._qkv(s)  # [N, H, L, D/H]
        return _attention_weights(q[:, :, row : row + 1], k, key_mask)[:, :, 0]  # [N, H, L]


class PatchTransformerEncoder(nn.Module):
    """SPIRL's encoder of stacked per-frame patch-embedding matrices (SPEC §7.1-4, paper Tab. 13-15).

    Per frame: shared Linear(embed_dim → token_dim) on each row, a [cls] token (shared by the frames) prepended,
    one TransformerBlock over [cls; tokens], pooled to token_dim; the F frame vectors are concatenated (oldest first).
    No positional embedding is added here (the MAE pos-embed is already inside the embeddings).

    padding: "zero" (released code) - padded rows (exactly zero embeddings) are projected to the bias and take part
    like real rows, counts are ignored; "trainable" - the projected padded rows are replaced by a learned [pad] token;
    "masked" - padded keys get zero attention (the [cls] key is always attended).
    pool: "cls" - the [cls] output row; "mean" - the mean over the token rows (never the [cls] row): over all K_max rows
    for "zero" (as the plain zero-padding model sees them), over the frame's real rows for "trainable"/"masked"
    (a frame with zero real rows pools to the zero vector).
    With "cls" pooling only the [cls] row of the block is computed (`first_row_only`, TransformerBlock.
    forward_first_row); switching it off runs the whole block and reads row 0, the same numbers to float rounding.
    """

    first_row_only = True

    def __init__(self, embed_dim: int, token_dim: int, heads: int, mlp_dim: int, layer_norm_eps: float,
                 residual: bool, pool: str, padding: str, frames: int, k_max: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_transformer_args(token_dim, heads, pool, padding, frames, k_max)
        self.embed_dim, self.token_dim, self.heads = embed_dim, token_dim, heads
        self.pool, self.padding, self.frames, self.k_max = pool, padding, frames, k_max
        self.output_size = frames * token_dim
        with _build_context(generator):
            self.token_proj = nn.Linear(embed_dim, token_dim)
            self.block = TransformerBlock(token_dim, heads, mlp_dim, layer_norm_eps, residual)
        self.cls_token = nn.Parameter(torch.empty(token_dim))  # [T]
        self.register_parameter("pad_token", nn.Parameter(torch.empty(token_dim)) if padding == "trainable" else None)
        _init_layers(self, generator)
        with torch.no_grad():
            for token in (self.cls_token, self.pad_token):
                if token is not None:
                    token.normal_(0.0, TOKEN_INIT_STD, generator=generator)

    def _check_input(self, x: torch.Tensor, counts: torch.Tensor) -> None:
        """Shape checks (no device sync): x [B, F, K_max, embed_dim], counts [B, F]."""
        expected = (self.frames, self.k_max, self.embed_dim)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(x.shape)}")
        if tuple(counts.shape) != tuple(x.shape[:2]):
            raise ValueError(f"counts must be [B, F] = {tuple(x.shape[:2])}, got {tuple(counts.shape)}")

    def _valid(self, counts: torch.Tensor) -> torch.Tensor:
        """Real-row indicator. Args: counts [B, F] int. Returns: [B, F, K_max] bool."""
        rows = torch.arange(self.k_max, device=counts.device)  # [K]
        return rows < counts[..., None]  # [B, F, K]

    def sequences(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The block input S0 of every frame: [cls; projected rows] ([pad] on padded rows for "trainable").

        Args: x [B, F, K_max, embed_dim] (any float dtype); counts [B, F]. Returns: [B, F, 1+K_max, token_dim].
        """
        self._check_input(x, counts)
        tokens = self.token_proj(x.to(self.token_proj.weight.dtype))  # [B, F, K, T]
        if self.pad_token is not None:
            tokens = torch.where(self._valid(counts)[..., None], tokens, self.pad_token)  # [B, F, K, T]
        cls = self.cls_token.expand(*tokens.shape[:2], 1, self.token_dim)  # [B, F, 1, T]
        return torch.cat([cls, tokens], dim=2)  # [B, F, 1+K, T]

    def _key_mask(self, counts: torch.Tensor) -> torch.Tensor | None:
        """Attended keys for "masked" ([cls] always), else None. Args: counts [B, F]. Returns: [B·F, 1+K_max] bool."""
        if self.padding != "masked":
            return None
        valid = self._valid(counts).reshape(-1, self.k_max)  # [B·F, K]
        return torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)  # [B·F, 1+K]

    def _pool(self, out: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Frame vectors. Args: out [B, F, 1+K_max, T]; counts [B, F]. Returns: [B, F, T]."""
        if self.pool == "cls":
            return out[:, :, 0]  # [B, F, T]
        rows = out[:, :, 1:]  # [B, F, K, T]
        if self.padding == "zero":
            return rows.mean(dim=2)  # [B, F, T]
        valid = self._valid(counts)[..., None].to(rows.dtype)  # [B, F, K, 1]
        return (rows * valid).sum(dim=2) / valid.sum(dim=2).clamp(min=1.0)  # [B, F, T]

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Encode a batch of stacked observations.

        Args: x [B, F, K_max, embed_dim], padded rows exactly zero; counts [B, F] real rows per frame (int).
        Returns: [B, F·token_dim], frame vectors concatenated oldest first.
        """
        s0 = self.sequences(x, counts)  # [B, F, 1+K, T]
        b = s0.shape[0]
        if self.pool == "cls" and self.first_row_only:  # only the [cls] row is read: compute nothing else
            return self.block.forward_first_row(s0.flatten(0, 1), self._key_mask(counts)).reshape(b, self.output_size)
        out = self.block(s0.flatten(0, 1), self._key_mask(counts))  # [B·F, 1+K, T]
        pooled = self._pool(out.reshape(s0.shape), counts)  # [B, F, T]
        return pooled.reshape(b, self.output_size)  # [B, F·T]

    def attention_weights(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The [cls]-query attention of each frame over its keys ([cls] key first), for Fig. 6.

        Args: x [B, F, K_max, embed_dim]; counts [B, F]. Returns: [B, F, heads, 1+K_max], softmax over the last axis
        (padded keys are exactly 0 for "masked"; the caller drops padded keys and averages heads).
        """
        s0 = self.sequences(x, counts)  # [B, F, 1+K, T]
        att = self.block.query_attention(s0.flatten(0, 1), self._key_mask(counts), 0)  # [B·F, H, 1+K]
        return att.reshape(*s0.shape[:2], self.heads, 1 + self.k_max)  # [B, F, H, 1+K]


def _check_transformer_args(token_dim: int, heads: int, pool: str, padding: str, frames: int, k_max: int) -> None:
    """Validate PatchTransformerEncoder's discrete arguments."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if heads < 1 or token_dim % heads:
        raise ValueError(f"token_dim ({token_dim}) must be divisible by heads ({heads})")
    if frames < 1 or k_max < 1:
        raise ValueError(f"frames and k_max must be >= 1, got {frames}, {k_max}")


class PixelEncoder(nn.Module):
    """Pixel CNN of the pixel agents: (Conv → ReLU) per layer → flatten; layers `conv1`, `conv2`, ... in order.

    DE-Rainbow (SPEC §9.4): 4 stacked gray 84×84 frames, channels [32, 64], kernels [5, 5], strides [5, 5], paddings
    [3, 1] → 84 → 18 → 4, output 64·4·4 = 1024 (rgb96: 12 channels, 96 → 20 → 4, also 1024).
    Nature CNN (MLR, SPEC §15.4): channels [32, 64, 64], kernels [8, 4, 3], strides [4, 2, 1], paddings 0 →
    84 → 20 → 9 → 7, output 64·7·7 = 3136.
    """

    def __init__(self, in_channels: int, channels: list[int], kernels: list[int], strides: list[int],
                 paddings: list[int], input_size: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) == len(paddings) >= 1:
            raise ValueError("channels, kernels, strides and paddings must have the same number (>= 1) of entries, "
                             f"got {len(channels)}, {len(kernels)}, {len(strides)}, {len(paddings)}")
        self.in_channels, self.input_size, self.layers = in_channels, input_size, len(channels)
        with _build_context(generator):
            for i, (c_in, c_out) in enumerate(zip([in_channels, *channels[:-1]], channels, strict=True)):
                self.add_module(f"conv{i + 1}", nn.Conv2d(c_in, c_out, kernels[i], strides[i], paddings[i]))
        _init_layers(self, generator)
        side = input_size
        for k, s, p in zip(kernels, strides, paddings, strict=True):
            side = conv_output_size(side, k, s, p)
            if side < 1:
                raise ValueError(f"input_size {input_size} is too small for the convolutions")
        self.output_shape = (channels[-1], side, side)
        self.output_size = channels[-1] * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, C, H, W], uint8 (scaled by 1/255 here) or float (used as is). Returns: [B, output_size]."""
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.to(self.conv1.weight.dtype) / 255.0
        h = x.to(self.conv1.weight.dtype)
        for i in range(1, self.layers + 1):
            h = F.relu(getattr(self, f"conv{i}")(h))  # [B, C_i, H_i, W_i]
        return h.flatten(1)  # [B, C·H·W]


def minmax_renorm(h: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Each sample's features scaled to [0, 1] over all its other axes (MLR's renorm, SPEC §15.4).

    (h − min) / (max − min) per sample. Args: h [B, ...]; eps added to the range (0: a constant sample divides 0 by 0,
    as the released code's would). Returns: h's shape.
    """
    flat = h.flatten(1)  # [B, F]
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values  # [B, 1]
    return ((flat - low) / (high - low + eps)).view_as(h)
