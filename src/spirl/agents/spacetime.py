"""Space-time aggregators (SPEC §16): encoders that attend across the frames of a stack, drop-in replacements of
PatchTransformerEncoder (same interface: optional torch.Generator, `output_size`, forward(x [B, F, K_max, embed_dim],
counts [B, F]) -> [B, output_size], `attention_weights(x, counts)`).

- DividedSpaceTimeEncoder (`agent.aggregator: divided_st`): all N patches of every frame in patch-index order, one
  pre-LN block of causal temporal attention, spatial attention and MLP; the newest frame's tokens read out by a Linear.
- JointSpaceTimeEncoder (`agent.aggregator: joint_st`): PatchTransformerEncoder's F per-frame sequences [cls; tokens]
  merged into one sequence of F·(1+K_max) tokens (plus a temporal embedding), every token attending to every token.

Initialisation as in spirl.agents.networks: Linear weight and bias ~ U(±1/√fan_in), LayerNorm (1, 0), learned
tokens and embeddings ~ N(0, TOKEN_INIT_STD); with a torch.Generator every draw comes from it (global RNG untouched).
Attention runs fused (F.scaled_dot_product_attention) unless the block's `written_out_attention` is set (the vmapped
seeds of spirl.agents.multiseed set it on every TransformerBlock): the same maths, equal to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spirl.agents.networks import (
    TOKEN_INIT_STD,
    PatchTransformerEncoder,
    TransformerBlock,
    _build_context,
    _init_layers,
)


def _masked_attention(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ / √d) over the attended keys, written out (vmap-safe).

    Args: q [N, H, Lq, d]; k [N, H, L, d]; mask bool broadcastable to [N, H, Lq, L] (True = attended) or None.
    Returns: [N, H, Lq, L].
    """
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [N, H, Lq, L]
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(dim=-1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
            written_out: bool) -> torch.Tensor:
    """Attention output, fused or written out. Args: q [N, H, Lq, d]; k, v [N, H, L, d]; mask as in
    `_masked_attention` (not with causal); causal: query i attends keys j <= i (Lq == L). Returns: [N, H, Lq, d]."""
    if not written_out:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    if causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()  # [L, L]
    return _masked_attention(q, k, mask) @ v


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, D] -> [N, H, L, D/H] (heads contiguous in D)."""
    n, length, d = t.shape
    return t.reshape(n, length, heads, d // heads).transpose(1, 2)


def _check_common(token_dim: int, heads: int, frames: int, k_max: int) -> None:
    if heads < 1 or token_dim % heads:
        raise ValueError(f"token_dim ({token_dim}) must be divisible by heads ({heads})")
    if frames < 1 or k_max < 1:
        raise ValueError(f"frames and k_max must be >= 1, got {frames}, {k_max}")


class TemporalAttention(nn.Module):
    """Pre-LN causal self-attention over the frames of one patch position, with residual: s + MHSA_causal(LN s).

    Own LayerNorm `norm`, `qkv` (output columns q, k, v, heads contiguous in each) and output projection `attn_out`.
    """

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)

    def _qkv(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: s [N, F, D]. Returns: q, k, v, each [N, H, F, D/H]."""
        q, k, v = self.qkv(self.norm(s)).chunk(3, dim=-1)  # 3 × [N, F, D]
        return tuple(_split_heads(t, self.heads) for t in (q, k, v))

    def forward(self, s: torch.Tensor, written_out: bool = False, last_only: bool = False) -> torch.Tensor:
        """Args: s [N, F, D] (oldest frame first); written_out: written-out attention (vmap); last_only: compute the
        newest frame's row only (it attends to every frame, so no mask is needed). Returns: [N, F or 1, D]."""
        q, k, v = self._qkv(s)  # 3 × [N, H, F, D/H]
        if last_only:
            q, s = q[:, :, -1:], s[:, -1:]  # [N, H, 1, D/H], [N, 1, D]
        att = _attend(q, k, v, None, not last_only, written_out)  # [N, H, Lq, D/H]
        return s + self.attn_out(att.transpose(1, 2).reshape(s.shape))  # [N, Lq, D]

    def weights(self, s: torch.Tensor) -> torch.Tensor:
        """Causal softmax attention. Args: s [N, F, D]. Returns: [N, H, F (query), F (key)], 0 above the diagonal."""
        q, k, _ = self._qkv(s)
        causal = torch.ones(s.shape[1], s.shape[1], dtype=torch.bool, device=s.device).tril()  # [F, F]
        return _masked_attention(q, k, causal)


class DividedSpaceTimeEncoder(nn.Module):
    """Divided space-time attention over ALL patches of every frame (SPEC §16, `agent.aggregator: divided_st`).

    Row p of each frame is patch position p (K_max = N, counts all N). Token (f, p) = token_proj(x[f, p]) +
    spatial_embed[p] + time_embed[f]; one pre-LN block: `temporal` (token (f, p) attends (f', p), f' <= f; residual),
    then `block`, a residual TransformerBlock = spatial attention (token (f, p) attends (f, p') for every p'; residual)
    and MLP token_dim -> mlp_ratio·token_dim -> token_dim (exact GELU; residual). The newest frame's K_max tokens,
    flattened (patch-major), -> `readout` Linear(K_max·token_dim -> output_size).
    forward computes only what the read-out needs (`newest_only`: the newest frame's temporal row, its spatial
    attention and MLP); switching it off runs the whole block (`tokens_out`), the same numbers to float rounding.
    """

    newest_only = True

    def __init__(self, embed_dim: int = 64, token_dim: int = 16, heads: int = 4, mlp_ratio: int = 4,
                 layer_norm_eps: float = 1e-6, frames: int = 4, k_max: int = 144, output_size: int = 128,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_common(token_dim, heads, frames, k_max)
        if mlp_ratio < 1 or output_size < 1:
            raise ValueError(f"mlp_ratio and output_size must be >= 1, got {mlp_ratio}, {output_size}")
        self.embed_dim, self.token_dim, self.heads = embed_dim, token_dim, heads
        self.frames, self.k_max, self.output_size = frames, k_max, output_size
        with _build_context(generator):
            self.token_proj = nn.Linear(embed_dim, token_dim)
            self.temporal = TemporalAttention(token_dim, heads, layer_norm_eps)
            self.block = TransformerBlock(token_dim, heads, mlp_ratio * token_dim, layer_norm_eps, residual=True)
            self.readout = nn.Linear(k_max * token_dim, output_size)
        self.spatial_embed = nn.Parameter(torch.empty(k_max, token_dim))  # [K, d], by patch position
        self.time_embed = nn.Parameter(torch.empty(frames, token_dim))  # [F, d], oldest frame first
        _init_layers(self, generator)
        with torch.no_grad():
            for table in (self.spatial_embed, self.time_embed):
                table.normal_(0.0, TOKEN_INIT_STD, generator=generator)

    def _check_input(self, x: torch.Tensor, counts: torch.Tensor) -> None:
        """Shapes of x [B, F, K_max, embed_dim] and counts [B, F] (no value check, no device sync: that every row is
        a patch in index order is the variant's contract, checked where it is built: saliency.selection "all")."""
        expected = (self.frames, self.k_max, self.embed_dim)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be [B, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(x.shape)}")
        if tuple(counts.shape) != tuple(x.shape[:2]):
            raise ValueError(f"counts must be [B, F] = {tuple(x.shape[:2])}, got {tuple(counts.shape)}")

    def tokens(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The block input: projected rows + spatial + temporal embeddings.

        Args: x [B, F, K_max, embed_dim] (any float dtype); counts [B, F]. Returns: [B, F, K_max, token_dim].
        """
        self._check_input(x, counts)
        s0 = self.token_proj(x.to(self.token_proj.weight.dtype))  # [B, F, K, d]
        return s0 + self.spatial_embed + self.time_embed[:, None, :]  # [B, F, K, d]

    def _temporal(self, s0: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Args: s0 [B, F, K, d]. Returns: [B, F (1 if last_only), K, d]."""
        b, frames, k, d = s0.shape
        seq = s0.transpose(1, 2).reshape(b * k, frames, d)  # [B·K, F, d]: one sequence per patch position
        out = self.temporal(seq, self.block.written_out_attention, last_only)  # [B·K, F', d]
        return out.reshape(b, k, -1, d).transpose(1, 2)  # [B, F', K, d]

    def tokens_out(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Every token's block output (before the read-out).

        Args: x [B, F, K_max, embed_dim]; counts [B, F]. Returns: [B, F, K_max, token_dim].
        """
        s1 = self._temporal(self.tokens(x, counts), last_only=False)  # [B, F, K, d]
        return self.block(s1.flatten(0, 1), None).reshape(s1.shape)  # spatial attention + MLP per frame

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Args: x [B, F, K_max, embed_dim], all rows real; counts [B, F] (all K_max). Returns: [B, output_size]."""
        if self.newest_only:
            s1 = self._temporal(self.tokens(x, counts), last_only=True)[:, 0]  # [B, K, d]
            newest = self.block(s1, None)  # [B, K, d]
        else:
            newest = self.tokens_out(x, counts)[:, -1]  # [B, K, d]
        return self.readout(newest.flatten(1))  # [B, output_size]

    def attention_weights(self, x: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's softmax attention (rows sum to 1 over the keys).

        Args: x [B, F, K_max, embed_dim]; counts [B, F].
        Returns: temporal [B, K_max, H, F, F] (patch p, head, query frame f, key frame f'; 0 for f' > f),
            spatial [B, F, H, K_max, K_max] (frame f, head, query patch p, key patch p').
        """
        s0 = self.tokens(x, counts)  # [B, F, K, d]
        b, frames, k, d = s0.shape
        temporal = self.temporal.weights(s0.transpose(1, 2).reshape(b * k, frames, d))  # [B·K, H, F, F]
        s1 = self._temporal(s0, last_only=False).flatten(0, 1)  # [B·F, K, d]
        q, key, _ = self.block._qkv(s1)  # [B·F, H, K, d/H]
        spatial = _masked_attention(q, key, None)  # [B·F, H, K, K]
        return temporal.reshape(b, k, *temporal.shape[1:]), spatial.reshape(b, frames, *spatial.shape[1:])


class JointSpaceTimeEncoder(PatchTransformerEncoder):
    """Joint space-time attention over the whole stack (SPEC §16, `agent.aggregator: joint_st`).

    PatchTransformerEncoder (same constructor, parameters token_proj, block, cls_token, pad_token, the same padding
    modes) with its F per-frame sequences [cls; tokens] merged into ONE sequence of F·(1+K_max) tokens, frame f at
    rows f·(1+K_max) .. f·(1+K_max)+K_max ([cls] first); the one [cls] vector opens every frame, and `time_embed[f]`
    ([F, token_dim]) is added to every token of frame f ([cls] and [pad] included). Every token attends to every
    token of the stack (padded keys excepted for "masked"; [cls] keys are always attended).
    cross_frame = False masks attention to the own frame only: with time_embed zero that is exactly
    PatchTransformerEncoder (a check, not a model variant).
    pool: "cls" - the F [cls] output rows concatenated oldest first; "mean" - per frame, PatchTransformerEncoder's mean
    over the frame's token rows. Only the [cls] rows are computed for "cls" (`first_row_only`, the first row of each
    frame); switching it off runs the whole block, the same numbers to float rounding.
    Built with the same generator state, its shared parameters equal PatchTransformerEncoder's (time_embed is drawn
    last), and `load_state_dict` moves weights between the two (strict=False or time_embed dropped).
    """

    cross_frame = True

    def __init__(self, embed_dim: int, token_dim: int, heads: int, mlp_dim: int, layer_norm_eps: float,
                 residual: bool, pool: str, padding: str, frames: int, k_max: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(embed_dim, token_dim, heads, mlp_dim, layer_norm_eps, residual, pool, padding, frames, k_max,
                         generator)
        self.time_embed = nn.Parameter(torch.empty(frames, token_dim))  # [F, T], oldest frame first
        with torch.no_grad():
            self.time_embed.normal_(0.0, TOKEN_INIT_STD, generator=generator)

    def _cls_rows(self, device: torch.device) -> torch.Tensor:
        """Rows of the F [cls] tokens in the joint sequence: [F] long."""
        return torch.arange(self.frames, device=device) * (1 + self.k_max)

    def _attn_mask(self, counts: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor | None:
        """Which keys each query row attends to, or None (all).

        Args: counts [B, F]; rows [Lq] long query rows (None: all L = F·(1+K_max) rows).
        Returns: bool [B or 1, 1, Lq, L] (True = attended) or None.
        """
        mask = None
        if not self.cross_frame:
            frame = torch.arange(self.frames, device=counts.device).repeat_interleave(1 + self.k_max)  # [L]
            query = frame if rows is None else frame[rows]  # [Lq]
            mask = (query[:, None] == frame[None, :])[None, None]  # [1, 1, Lq, L]
        if self.padding == "masked":
            valid = self._valid(counts)  # [B, F, K]
            keys = torch.cat([valid.new_ones(*valid.shape[:2], 1), valid], dim=2).flatten(1)  # [B, L]
            keys = keys[:, None, None, :]  # [B, 1, 1, L]
            mask = keys if mask is None else mask & keys
        return mask

    def joint_sequence(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The block input: PatchTransformerEncoder.sequences + time_embed, frames concatenated.

        Args: x [B, F, K_max, embed_dim]; counts [B, F]. Returns: [B, F·(1+K_max), token_dim].
        """
        return (self.sequences(x, counts) + self.time_embed[:, None, :]).flatten(1, 2)  # [B, L, T]

    def _block(self, s: torch.Tensor, mask: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        """TransformerBlock.forward (same weights and maths) under a per-query mask, for query rows `rows` only.

        Args: s [N, L, T]; mask bool broadcastable to [N, H, Lq, L] or None; rows [Lq] long or None (all).
        Returns: [N, Lq, T].
        """
        blk, t = self.block, self.token_dim
        h = blk.norm1(s)  # [N, L, T]
        hq, sq = (h, s) if rows is None else (h[:, rows], s[:, rows])  # [N, Lq, T]
        q = _split_heads(F.linear(hq, blk.qkv.weight[:t], blk.qkv.bias[:t]), self.heads)  # [N, H, Lq, T/H]
        k, v = F.linear(h, blk.qkv.weight[t:], blk.qkv.bias[t:]).chunk(2, dim=-1)  # 2 × [N, L, T]
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)  # [N, H, L, T/H]
        att = _attend(q, k, v, mask, False, blk.written_out_attention)  # [N, H, Lq, T/H]
        att = blk.attn_out(att.transpose(1, 2).reshape(sq.shape))  # [N, Lq, T]
        s1 = sq + att if blk.residual else att
        mlp = blk.fc2(F.gelu(blk.fc1(blk.norm2(s1))))  # [N, Lq, T]
        return s1 + mlp if blk.residual else mlp

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Encode a batch of stacked observations.

        Args: x [B, F, K_max, embed_dim], padded rows exactly zero; counts [B, F] real rows per frame (int).
        Returns: [B, F·token_dim], frame vectors concatenated oldest first.
        """
        s = self.joint_sequence(x, counts)  # [B, L, T]
        b = s.shape[0]
        if self.pool == "cls" and self.first_row_only:  # only the [cls] rows are read: compute nothing else
            rows = self._cls_rows(s.device)  # [F]
            return self._block(s, self._attn_mask(counts, rows), rows).reshape(b, self.output_size)
        out = self._block(s, self._attn_mask(counts, None), None)  # [B, L, T]
        pooled = self._pool(out.reshape(b, self.frames, 1 + self.k_max, self.token_dim), counts)  # [B, F, T]
        return pooled.reshape(b, self.output_size)

    def attention_weights(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The [cls]-query attention of each frame over every key of the stack.

        Args: x [B, F, K_max, embed_dim]; counts [B, F].
        Returns: [B, F, H, F, 1+K_max]: query frame f's [cls], head, key frame f', key slot (0 = that frame's [cls]);
            softmax over the last two axes together (padded keys exactly 0 for "masked", other frames' keys exactly 0
            with cross_frame off). att[:, -1, :, -1] is the newest [cls] over its own frame's keys (Fig. 6's slice,
            no longer summing to 1 alone).
        """
        s = self.joint_sequence(x, counts)  # [B, L, T]
        rows, t = self._cls_rows(s.device), self.token_dim
        h = self.block.norm1(s)  # [B, L, T]
        q = _split_heads(F.linear(h[:, rows], self.block.qkv.weight[:t], self.block.qkv.bias[:t]), self.heads)
        k = _split_heads(F.linear(h, self.block.qkv.weight[t : 2 * t], self.block.qkv.bias[t : 2 * t]), self.heads)
        att = _masked_attention(q, k, self._attn_mask(counts, rows))  # [B, H, F, L]
        att = att.reshape(s.shape[0], self.heads, self.frames, self.frames, 1 + self.k_max)  # [B, H, F, F, 1+K]
        return att.transpose(1, 2)  # [B, F, H, F, 1+K]
