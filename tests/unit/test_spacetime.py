"""Space-time aggregators (SPEC §16): divided block vs explicit loops, causality, joint == per-frame encoder when
cross-frame attention is off, cross-frame attention, parameter counts, generator determinism, vmap path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from spirl.agents.networks import PatchTransformerEncoder, TransformerBlock
from spirl.agents.spacetime import DividedSpaceTimeEncoder, JointSpaceTimeEncoder
from spirl.common.nn import parameter_count

PADDINGS = ["zero", "trainable", "masked"]
B, FR, D = 3, 4, 64  # batch, frames, embed_dim
KD, TD, HD = 6, 16, 4  # divided (small): K = N patches, token dim, heads
KJ, TJ, HJ = 6, 32, 8  # joint (small): K_max, token dim, heads


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _divided(k: int = KD, seed: int = 0, **kw) -> DividedSpaceTimeEncoder:
    return DividedSpaceTimeEncoder(D, TD, HD, frames=FR, k_max=k, generator=_gen(seed), **kw)


def _full(k: int = KD, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """All patches real: x [B, F, K, D], counts all K."""
    return torch.randn(B, FR, k, D, generator=_gen(seed)), torch.full((B, FR), k)


def _joint_args(padding: str, pool: str = "cls", residual: bool = True, k: int = KJ) -> tuple:
    return (D, TJ, HJ, 128, 1e-6, residual, pool, padding, FR, k)


def _padded_batch(k: int = KJ, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly-zero padded rows; counts cover 0, partial and full frames."""
    g = _gen(seed)
    counts = torch.randint(1, k + 1, (B, FR), generator=g)
    counts[0, 0], counts[1, 2], counts[2, 3] = 0, k, 2
    x = torch.randn(B, FR, k, D, generator=g) * (torch.arange(k) < counts[..., None])[..., None]
    return x, counts


# ---------------------------------------------------------------- divided space-time


def _ln(t: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mu = t.mean()
    var = ((t - mu) ** 2).mean()
    return (t - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _mha(query: torch.Tensor, keys: list[torch.Tensor], qkv: torch.nn.Linear, out: torch.nn.Linear,
         heads: int) -> torch.Tensor:
    """One query row (already LayerNormed) over a list of LayerNormed key rows, plain matmuls and softmax."""
    d = query.shape[0]
    dh = d // heads
    w, b = qkv.weight, qkv.bias
    q = w[:d] @ query + b[:d]
    ks = [w[d : 2 * d] @ key + b[d : 2 * d] for key in keys]
    vs = [w[2 * d :] @ key + b[2 * d :] for key in keys]
    parts = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        logits = torch.stack([q[sl] @ kk[sl] for kk in ks]) / math.sqrt(dh)
        weights = torch.softmax(logits, dim=0)
        parts.append(sum(weights[j] * vs[j][sl] for j in range(len(vs))))
    return out.weight @ torch.cat(parts) + out.bias


def _divided_reference(enc: DividedSpaceTimeEncoder, x: torch.Tensor) -> torch.Tensor:
    """Explicit loops over (f, p) for one sample x [F, K, D]: block output [F, K, d]."""
    frames, k, _ = x.shape
    tm, blk = enc.temporal, enc.block
    s0 = [[enc.token_proj.weight @ x[f, p] + enc.token_proj.bias + enc.spatial_embed[p] + enc.time_embed[f]
           for p in range(k)] for f in range(frames)]
    n0 = [[_ln(s0[f][p], tm.norm) for p in range(k)] for f in range(frames)]
    s1 = [[s0[f][p] + _mha(n0[f][p], [n0[g][p] for g in range(f + 1)], tm.qkv, tm.attn_out, enc.heads)
           for p in range(k)] for f in range(frames)]
    n1 = [[_ln(s1[f][p], blk.norm1) for p in range(k)] for f in range(frames)]
    s2 = [[s1[f][p] + _mha(n1[f][p], n1[f], blk.qkv, blk.attn_out, enc.heads) for p in range(k)]
          for f in range(frames)]
    out = torch.empty(frames, k, enc.token_dim, dtype=x.dtype)
    for f in range(frames):
        for p in range(k):
            hidden = F.gelu(blk.fc1.weight @ _ln(s2[f][p], blk.norm2) + blk.fc1.bias)
            out[f, p] = s2[f][p] + blk.fc2.weight @ hidden + blk.fc2.bias
    return out


@torch.no_grad()
def test_divided_block_equals_explicit_loops():
    enc = _divided().double()
    x, counts = _full()
    x = x.double()
    got = enc.tokens_out(x, counts)  # [B, F, K, d]
    for i in range(B):
        torch.testing.assert_close(got[i], _divided_reference(enc, x[i]), atol=1e-10, rtol=1e-10)
    expected = enc.readout(got[:, -1].flatten(1))
    torch.testing.assert_close(enc(x, counts), expected, atol=1e-10, rtol=1e-10)  # newest_only path
    enc.newest_only = False
    torch.testing.assert_close(enc(x, counts), expected, atol=1e-12, rtol=1e-12)


@torch.no_grad()
def test_divided_temporal_attention_is_causal():
    enc = _divided()
    x, counts = _full()
    base = enc.tokens_out(x, counts)
    for f in range(FR):
        x2 = x.clone()
        x2[:, f] += torch.randn(B, KD, D, generator=_gen(7 + f))
        out = enc.tokens_out(x2, counts)
        torch.testing.assert_close(out[:, :f], base[:, :f], atol=1e-6, rtol=0)  # older frames untouched
        assert (out[:, f:] - base[:, f:]).abs().amax(dim=(2, 3)).min() > 1e-3  # frame f and newer all change
    temporal, spatial = enc.attention_weights(x, counts)
    assert temporal.shape == (B, KD, HD, FR, FR) and spatial.shape == (B, FR, HD, KD, KD)
    assert torch.all(temporal.triu(diagonal=1) == 0)
    torch.testing.assert_close(temporal.sum(-1), torch.ones(B, KD, HD, FR))
    torch.testing.assert_close(spatial.sum(-1), torch.ones(B, FR, HD, KD))


def test_divided_parameter_count_and_defaults():
    enc = DividedSpaceTimeEncoder(generator=_gen(0))  # embed_dim 64, d 16, 4 heads, mlp ×4, F 4, K 144, out 128
    d, k, f = 16, 144, 4
    expected = (
        (64 * d + d)  # token_proj
        + k * d + f * d  # spatial_embed, time_embed
        + (2 * d) + (d * 3 * d + 3 * d) + (d * d + d)  # temporal: LayerNorm, qkv, attn_out
        + (2 * d) + (d * 3 * d + 3 * d) + (d * d + d)  # spatial (block): norm1, qkv, attn_out
        + (2 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)  # MLP: norm2, fc1, fc2
        + (k * d * 128 + 128)  # readout 2304 -> 128
    )
    assert parameter_count(enc) == expected == 302_848
    assert enc.output_size == 128 and enc.block.norm1.eps == 1e-6 and enc.temporal.norm.eps == 1e-6
    x, counts = _full(k=144)
    assert enc(x, counts).shape == (B, 128)


def test_divided_generator_determinism_and_input_checks():
    state = torch.get_rng_state()
    a, b, c = _divided(seed=3), _divided(seed=3), _divided(seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert not torch.equal(a.spatial_embed, c.spatial_embed) and not torch.equal(a.readout.weight, c.readout.weight)
    assert 0.01 < a.spatial_embed.std().item() < 0.03 and torch.all(a.block.norm1.weight == 1)
    x, counts = _full()
    with pytest.raises(ValueError, match="x must be"):
        a(x[:, :, :-1], counts)
    with pytest.raises(ValueError, match="counts must be"):
        a(x, counts[:, :-1])
    with pytest.raises(ValueError, match="divisible"):
        DividedSpaceTimeEncoder(D, 16, 3)


# ---------------------------------------------------------------- joint space-time


def _pair(padding: str, pool: str = "cls", residual: bool = True, seed: int = 0):
    joint = JointSpaceTimeEncoder(*_joint_args(padding, pool, residual), generator=_gen(seed))
    plain = PatchTransformerEncoder(*_joint_args(padding, pool, residual), generator=_gen(seed))
    return joint, plain


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("residual", [False, True])
@torch.no_grad()
def test_joint_without_cross_frame_equals_patch_transformer(padding, pool, residual):
    joint, plain = _pair(padding, pool, residual)
    state = {k: v for k, v in joint.state_dict().items() if k != "time_embed"}
    assert state.keys() == plain.state_dict().keys()
    for name, value in state.items():  # built from one generator state, the shared weights are equal
        assert torch.equal(value, plain.state_dict()[name])
    plain = PatchTransformerEncoder(*_joint_args(padding, pool, residual), generator=_gen(9))
    plain.load_state_dict(state)  # copying weights across the two
    joint.time_embed.zero_()
    joint.cross_frame = False
    x, counts = _padded_batch()
    expected = plain(x, counts)
    for first_row_only in (True, False):
        joint.first_row_only = plain.first_row_only = first_row_only
        torch.testing.assert_close(joint(x, counts), expected, atol=1e-5, rtol=1e-5)
    if pool == "cls":
        att = joint.attention_weights(x, counts)  # [B, F, H, F, 1+K]
        own = torch.stack([att[:, f, :, f] for f in range(FR)], dim=1)
        torch.testing.assert_close(own, plain.attention_weights(x, counts), atol=1e-6, rtol=1e-5)
        assert att.sum() == pytest.approx(B * FR * HJ, rel=1e-5) and own.sum() == pytest.approx(B * FR * HJ, rel=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
@torch.no_grad()
def test_joint_attends_across_frames(padding):
    joint = JointSpaceTimeEncoder(*_joint_args(padding), generator=_gen(0))
    x, counts = _padded_batch()
    x2 = x.clone()
    counts2 = counts.clone()
    counts2[:, 0] = 3
    x2[:, 0] = torch.randn(B, KJ, D, generator=_gen(5)) * (torch.arange(KJ) < 3)[:, None]
    newest = slice((FR - 1) * TJ, FR * TJ)
    base, changed = joint(x, counts), joint(x2, counts2)
    assert (changed[:, newest] - base[:, newest]).abs().amax(dim=1).min() > 1e-4
    joint.first_row_only = False
    torch.testing.assert_close(joint(x, counts), base, atol=1e-5, rtol=1e-5)
    joint.cross_frame = False
    torch.testing.assert_close(joint(x2, counts2)[:, newest], joint(x, counts)[:, newest], atol=1e-6, rtol=0)
    joint.cross_frame = True
    att = joint.attention_weights(x, counts)
    assert att.shape == (B, FR, HJ, FR, 1 + KJ)
    torch.testing.assert_close(att.sum(dim=(-2, -1)), torch.ones(B, FR, HJ))
    assert att[:, -1, :, :-1].sum(dim=(-2, -1)).min() > 0  # the newest [cls] puts weight on older frames
    if padding == "masked":
        padded = torch.arange(KJ) >= counts[..., None]  # [B, F', K]
        assert torch.all(att[..., 1:].masked_select(padded[:, None, None]) == 0)


def test_joint_parameter_count_and_determinism():
    for padding in PADDINGS:
        joint, plain = _pair(padding)
        assert parameter_count(joint) == parameter_count(plain) + FR * TJ
    # SPIRL's defaults: embed 64, token_dim 32, 8 heads, MLP 128, K_max 50, padding zero, F 4
    joint = JointSpaceTimeEncoder(64, 32, 8, 128, 1e-6, True, "cls", "zero", 4, 50, generator=_gen(0))
    expected = (
        (64 * 32 + 32)  # token_proj
        + 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32)  # norm1, qkv, attn_out
        + 2 * 32 + (32 * 128 + 128) + (128 * 32 + 32)  # norm2, fc1, fc2
        + 32  # cls_token
        + 4 * 32  # time_embed
    )
    assert parameter_count(joint) == expected == 14_944 and joint.output_size == 128
    state = torch.get_rng_state()
    a, b, c = (JointSpaceTimeEncoder(*_joint_args("trainable"), generator=_gen(s)) for s in (2, 2, 3))
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert not torch.equal(a.time_embed, c.time_embed)
    x, counts = _padded_batch()
    with pytest.raises(ValueError, match="x must be"):
        a(x[:, :-1], counts)


# ---------------------------------------------------------------- written-out attention under vmap (multiseed)


@torch.no_grad()
def test_vmap_written_out_attention():
    def real_rows(x: torch.Tensor) -> torch.Tensor:
        return (x.abs().sum(-1) > 0).sum(-1)

    divided = _divided()
    joint = JointSpaceTimeEncoder(*_joint_args("masked"), generator=_gen(0))
    for enc, (x, _) in ((divided, _full()), (joint, _padded_batch())):
        xs = torch.stack([x, x.flip(0)])  # [S, B, F, K, D]
        expected = torch.stack([enc(xi, real_rows(xi)) for xi in xs])
        for module in enc.modules():
            if isinstance(module, TransformerBlock):
                module.written_out_attention = True
        torch.testing.assert_close(vmap(lambda xi, e=enc: e(xi, real_rows(xi)))(xs), expected, atol=1e-5, rtol=1e-5)
