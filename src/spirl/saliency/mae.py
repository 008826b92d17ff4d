"""The small masked autoencoder of SPIRL (SPEC §3): ViT encoder/decoder on 8×8 patches of 96×96 frames."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spirl.params import LOSS_ON  # mae.loss_on


@dataclass(frozen=True)
class MAEConfig:
    """Architecture of the MAE; the defaults are the paper's Table 4."""

    img_size: int = 96
    patch_size: int = 8
    in_chans: int = 3
    encoder_dim: int = 64
    encoder_depth: int = 3
    encoder_heads: int = 4
    decoder_dim: int = 128
    decoder_depth: int = 3
    decoder_heads: int = 8
    mlp_ratio: int = 4
    layer_norm_eps: float = 1e-6
    token_init_std: float = 0.02
    norm_pix_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "in_chans", "encoder_dim", "encoder_depth", "encoder_heads",
                     "decoder_dim", "decoder_depth", "decoder_heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MAEConfig.{name} must be a positive integer, got {value!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"MAEConfig.img_size ({self.img_size}) must be a multiple of patch_size "
                             f"({self.patch_size})")
        for dim, heads in (("encoder_dim", "encoder_heads"), ("decoder_dim", "decoder_heads")):
            if getattr(self, dim) % getattr(self, heads):
                raise ValueError(f"MAEConfig.{dim} ({getattr(self, dim)}) must be divisible by {heads} "
                                 f"({getattr(self, heads)})")
            if getattr(self, dim) % 4:
                raise ValueError(f"MAEConfig.{dim} ({getattr(self, dim)}) must be a multiple of 4 (2-D sin-cos)")
        for name in ("layer_norm_eps", "token_init_std", "norm_pix_eps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"MAEConfig.{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per image (grid²)."""
        return self.grid * self.grid

    @property
    def patch_dim(self) -> int:
        """Values per patch vector (p·p·C)."""
        return self.patch_size * self.patch_size * self.in_chans


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into patch vectors, patches row-major, values (row, column, channel) inside a patch.

    Args: imgs [B, C, H, W] with H, W multiples of patch_size.
    Returns: [B, N, p*p*C], N = (H/p)·(W/p).
    """
    b, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch size {p}")
    x = imgs.reshape(b, c, h // p, p, w // p, p)  # [B, C, gh, pr, gw, pc]
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, gh, gw, pr, pc, C]
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, patch_size: int, in_chans: int, grid: int) -> torch.Tensor:
    """Exact inverse of patchify for a square grid.

    Args: x [B, grid², p*p*C].
    Returns: [B, C, grid·p, grid·p].
    """
    b, n, d = x.shape
    p = patch_size
    if n != grid * grid or d != p * p * in_chans:
        raise ValueError(f"patches {tuple(x.shape)} do not match grid {grid}, patch {p}, channels {in_chans}")
    x = x.reshape(b, grid, grid, p, p, in_chans)  # [B, gh, gw, pr, pc, C]
    x = x.permute(0, 5, 1, 3, 2, 4)  # [B, C, gh, pr, gw, pc]
    return x.reshape(b, in_chans, grid * p, grid * p)


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding: first half encodes the column, second half the row.

    Args: dim (multiple of 4), grid (patches per side), cls_token (prepend a zero row).
    Returns: float32 [grid² (+1), dim], patch n = row·grid + col.
    """
    if dim % 4:
        raise ValueError(f"sin-cos embedding dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)  # [dim/4]
    rows, cols = np.divmod(np.arange(grid * grid, dtype=np.float64), grid)  # [N], [N]

    def half(pos: np.ndarray) -> np.ndarray:
        angles = pos[:, None] * omega[None, :]  # [N, dim/4]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # [N, dim/2]

    table = np.concatenate([half(cols), half(rows)], axis=1)  # [N, dim]
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)  # [N+1, dim]
    return torch.from_numpy(table.astype(np.float32))


def normalized_patches(patches: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-patch normalised pixels (x − mean)/sqrt(var + eps), unbiased variance over each patch.

    Computed on values shifted by the patch's first value (same result), so a flat patch gives exactly 0.
    Args: patches [B, N, P]. Returns: [B, N, P].
    """
    x = patches - patches[..., :1]  # [B, N, P]
    mean = x.mean(dim=-1, keepdim=True)  # [B, N, 1]
    var = x.var(dim=-1, keepdim=True, correction=1)  # [B, N, 1]
    return (x - mean) / torch.sqrt(var + eps)


def random_keep_indices(batch: int, num_patches: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """Uniformly random distinct visible patches per sample, drawn only from `generator`.

    Returns: LongTensor [batch, keep] on the generator's device.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("random_keep_indices needs an explicit torch.Generator")
    if not 0 <= keep <= num_patches:
        raise ValueError(f"keep must be in [0, {num_patches}], got {keep}")
    noise = torch.rand(batch, num_patches, generator=generator, device=generator.device)  # [B, N]
    return torch.argsort(noise, dim=1)[:, :keep]


class Block(nn.Module):
    """Pre-LN transformer block: x + MHSA(LN x), then x + MLP(LN x) (exact GELU)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)  # output columns: q, k, v (heads contiguous in each)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, H, L, D/H]."""
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Multi-head attention of q [B, Lq, D] over k, v [B, L, D]; mask [B, 1, 1, L] True = attend."""
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), attn_mask=mask)
        b, h, lq, hd = out.shape  # [B, H, Lq, D/H]
        return self.proj(out.transpose(1, 2).reshape(b, lq, h * hd))  # [B, Lq, D]

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """MLP(LN x) of the residual stream x [B, L, D] -> [B, L, D]."""
        return self.fc2(F.gelu(self.fc1(self.norm2(x))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x [B, L, D]; mask [B, 1, 1, L] bool (True = key takes part) or None. Returns [B, L, D]."""
        return self.forward_qkv(x, self.qkv(self.norm1(x)), mask)

    def forward_qkv(self, x: torch.Tensor, qkv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """forward(x) given its q/k/v projections qkv = self.qkv(self.norm1(x)) [B, L, 3D] (computed by the caller,
        e.g. rows shared by many sequences once). Returns [B, L, D]."""
        q, k, v = qkv.chunk(3, dim=-1)  # 3 × [B, L, D]
        x = x + self._attend(q, k, v, mask)
        return x + self._mlp(x)

    def forward_rows(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The block's output at one row per sequence (keys/values from all rows); equals forward(x)[b, rows[b]].

        Args: x [B, L, D]; rows LongTensor [B]. Returns: [B, D].
        """
        d = x.shape[-1]
        pick = torch.arange(x.shape[0], device=x.device)  # [B]
        h = self.norm1(x)  # [B, L, D]
        k, v = F.linear(h, self.qkv.weight[d:], self.qkv.bias[d:]).chunk(2, dim=-1)  # 2 × [B, L, D]
        q = F.linear(h[pick, rows], self.qkv.weight[:d], self.qkv.bias[:d])  # [B, D]
        y = x[pick, rows] + self._attend(q[:, None], k, v, None)[:, 0]  # [B, D]
        return y + self._mlp(y)


class MaskedAutoencoder(nn.Module):
    """MAE with fixed 2-D sin-cos positions (SPEC §3.1); pass `generator` for reproducible weights."""

    def __init__(self, config: MAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        # default nn init would draw from the global RNG; keep it untouched when a generator is given
        fork = torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()
        with fork:
            self._build(config)
        self._init_weights(generator)

    def _build(self, c: MAEConfig) -> None:
        """Create the layers (weights are overwritten by _init_weights)."""
        self.patch_embed = nn.Linear(c.patch_dim, c.encoder_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.encoder_dim))
        self.register_buffer("encoder_pos_embed", sincos_pos_embed_2d(c.encoder_dim, c.grid, True)[None])
        self.encoder_blocks = nn.ModuleList(
            [Block(c.encoder_dim, c.encoder_heads, c.mlp_ratio, c.layer_norm_eps) for _ in range(c.encoder_depth)])
        self.encoder_norm = nn.LayerNorm(c.encoder_dim, eps=c.layer_norm_eps)
        self.decoder_embed = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(c.decoder_dim, c.grid, True)[None])
        self.decoder_blocks = nn.ModuleList(
            [Block(c.decoder_dim, c.decoder_heads, c.mlp_ratio, c.layer_norm_eps) for _ in range(c.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(c.decoder_dim, eps=c.layer_norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_dim, c.patch_dim)

    @torch.no_grad()
    def _init_weights(self, generator: torch.Generator | None) -> None:
        """Xavier-uniform Linear weights, zero biases, LayerNorm (1, 0), tokens ~ N(0, token_init_std)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for token in (self.cls_token, self.mask_token):
            token.normal_(0.0, self.config.token_init_std, generator=generator)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus the encoder pos-embed of each patch's position.

        Args: patches [B, N, P] (all N patches, in order). Returns: [B, N, enc_dim].
        """
        return self.patch_embed(patches) + self.encoder_pos_embed[:, 1:]

    def encode(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Prepend cls, run the encoder blocks and final LN.

        Args: tokens [B, L, enc_dim] (embedded visible patches); valid [B, L] bool or None (False rows are
            padding: no token attends to them).
        Returns: [B, 1+L, enc_dim] (row 0 = cls).
        """
        cls = (self.cls_token + self.encoder_pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)  # [B, 1, D]
        x = torch.cat([cls.to(tokens.dtype), tokens], dim=1)  # [B, 1+L, D]
        mask = None
        if valid is not None:
            keep_cls = torch.ones_like(valid[:, :1], dtype=torch.bool)  # [B, 1]
            mask = torch.cat([keep_cls, valid.bool()], dim=1)[:, None, None, :]  # [B, 1, 1, 1+L]
        for block in self.encoder_blocks:
            x = block(x, mask)
        return self.encoder_norm(x)

    def _decoder_input(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Decoder-embed, scatter visible tokens to ids_keep, mask token elsewhere, cls first, add pos.

        Args: latent [B, 1+L, enc_dim]; ids_keep [B, L]. Returns: [B, 1+N, dec_dim].
        """
        x = self.decoder_embed(latent)  # [B, 1+L, Dd]
        b, _, dd = x.shape
        canvas = self.mask_token.to(x.dtype).expand(b, self.config.num_patches, dd)  # [B, N, Dd]
        index = ids_keep[..., None].expand(-1, -1, dd)  # [B, L, Dd]
        canvas = canvas.scatter(1, index, x[:, 1:])  # [B, N, Dd]
        return torch.cat([x[:, :1], canvas], dim=1) + self.decoder_pos_embed

    def decode(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Predict all patches from the encoded visible set.

        Args: latent [B, 1+L, enc_dim] (from encode); ids_keep [B, L] positions of the visible tokens.
        Returns: [B, N, P] predictions (cls row dropped).
        """
        x = self._decoder_input(latent, ids_keep)  # [B, 1+N, Dd]
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x[:, 1:]))

    first_block_shortcut = True  # decode_rows' first-block shortcut (off: the plain block, for tests and benchmarks)

    def decode_rows(self, latent: torch.Tensor, ids_keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """decode(latent, ids_keep)[b, rows[b]], computing the last block only at that row (exact shortcut).

        Args: latent [B, 1+L, enc_dim]; ids_keep [B, L]; rows LongTensor [B] patch indices. Returns: [B, P].
        """
        x = self._decoder_input(latent, ids_keep)  # [B, 1+N, Dd]
        first, *body, last = self.decoder_blocks
        x = first.forward_qkv(x, self._first_qkv(first, x, ids_keep)) if self.first_block_shortcut else first(x)
        for block in body:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(last.forward_rows(x, rows + 1)))

    def _first_qkv(self, block: Block, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """block.qkv(block.norm1(x)) of the first decoder block, with the masked rows computed once (exact shortcut).

        Every masked row of every sequence enters as [mask] + its position, so its norm and projection depend on
        the position only: computed once for all positions, then the cls and visible rows of each sequence.
        Args: x [B, 1+N, Dd] the decoder input; ids_keep [B, L]. Returns: [B, 1+N, 3·Dd].
        """
        shared = block.qkv(block.norm1(self.mask_token.to(x.dtype) + self.decoder_pos_embed))  # [1, 1+N, 3Dd]
        rows = torch.cat([torch.zeros_like(ids_keep[:, :1]), ids_keep + 1], dim=1)  # [B, 1+L]: cls, visible
        own = block.qkv(block.norm1(torch.gather(x, 1, rows[..., None].expand(-1, -1, x.shape[-1]))))  # [B, 1+L, 3Dd]
        out = shared.expand(x.shape[0], -1, -1).to(own.dtype)  # [B, 1+N, 3Dd]
        return out.scatter(1, rows[..., None].expand(-1, -1, own.shape[-1]), own)

    def forward(self, imgs: torch.Tensor, keep: int, generator: torch.Generator,
                loss_on: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask, encode, decode and score one batch.

        Args: imgs [B, C, H, W] float in [0, 1]; keep visible patches per sample; generator for the masks;
            loss_on "all" (average over all N patches, released code) or "masked" (masked patches only).
        Returns: loss (scalar), pred [B, N, P], mask [B, N] (1 = masked).
        """
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
        patches = patchify(imgs, self.config.patch_size)  # [B, N, P]
        b, n, _ = patches.shape
        ids_keep = random_keep_indices(b, n, keep, generator).to(imgs.device)  # [B, L]
        embedded = self.embed(patches)  # [B, N, D]
        tokens = torch.gather(embedded, 1, ids_keep[..., None].expand(-1, -1, embedded.shape[-1]))  # [B, L, D]
        pred = self.decode(self.encode(tokens), ids_keep)  # [B, N, P]
        mask = torch.ones(b, n, device=imgs.device).scatter(1, ids_keep, 0.0)  # [B, N]
        target = normalized_patches(patches.float(), self.config.norm_pix_eps)  # [B, N, P]
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)  # [B, N]
        loss = per_patch.mean() if loss_on == "all" else (per_patch * mask).sum() / mask.sum()
        return loss, pred, mask


def parameter_counts(model: MaskedAutoencoder) -> dict[str, int]:
    """Trainable parameter counts: encoder (no cls/pos), decoder (no mask token/pos) and total."""

    def count(*modules: nn.Module) -> int:
        """Trainable parameters of the given modules."""
        return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)

    encoder = count(model.patch_embed, model.encoder_blocks, model.encoder_norm)
    decoder = count(model.decoder_embed, model.decoder_blocks, model.decoder_norm, model.decoder_pred)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"encoder": encoder, "decoder": decoder, "total": total}
