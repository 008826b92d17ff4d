"""Feature encoders (SPEC §7.1-4, §9.4): shapes, exact maths vs a functional re-implementation, padding semantics."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spirl.agents.networks import (
    PatchTransformerEncoder,
    PixelEncoder,
    TransformerBlock,
)
from spirl.common.nn import conv_output_size, parameter_count
from spirl.envs.preprocess import to_gray84

VARIANTS = list(itertools.product([False, True], ["cls", "mean"], ["zero", "trainable", "masked"]))
B, FR, K, D, T, H = 3, 4, 6, 64, 32, 8


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _encoder(residual: bool, pool: str, padding: str, k_max: int = K, seed: int = 0) -> PatchTransformerEncoder:
    return PatchTransformerEncoder(D, T, H, 128, 1e-6, residual=residual, pool=pool, padding=padding, frames=FR,
                                   k_max=k_max, generator=_gen(seed))


def _batch(k_max: int = K, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random embeddings with exactly-zero padded rows; counts cover 0, partial and full frames."""
    g = _gen(seed)
    counts = torch.randint(1, k_max + 1, (B, FR), generator=g)  # [B, F]
    counts[0, 0], counts[1, 2] = 0, k_max
    x = torch.randn(B, FR, k_max, D, generator=g)  # [B, F, K, D]
    x = x * (torch.arange(k_max) < counts[..., None])[..., None]
    return x, counts


def _padded(counts: torch.Tensor, k_max: int) -> torch.Tensor:
    return torch.arange(k_max) >= counts[..., None]  # [B, F, K] True = padded row


def _reference(enc: PatchTransformerEncoder, x: torch.Tensor, counts: torch.Tensor):
    """Hand-written forward with the module's own weights; returns (features [B, F·T], cls attention [B, F, H, 1+K])."""
    blk, k_max = enc.block, x.shape[2]
    tokens = x @ enc.token_proj.weight.T + enc.token_proj.bias  # [B, F, K, T]
    if enc.padding == "trainable":
        tokens = torch.where(_padded(counts, k_max)[..., None], enc.pad_token, tokens)
    s0 = torch.cat([enc.cls_token.expand(B, FR, 1, T), tokens], dim=2)  # [B, F, 1+K, T]
    h = F.layer_norm(s0, (T,), blk.norm1.weight, blk.norm1.bias, 1e-6)
    q, k, v = (h @ blk.qkv.weight.T + blk.qkv.bias).split(T, dim=-1)  # 3 × [B, F, 1+K, T]
    q, k, v = (t.reshape(B, FR, k_max + 1, H, T // H) for t in (q, k, v))
    logits = torch.einsum("bflhd,bfmhd->bfhlm", q, k) / math.sqrt(T // H)  # [B, F, H, L, L]
    if enc.padding == "masked":
        key_pad = torch.cat([torch.zeros(B, FR, 1, dtype=torch.bool), _padded(counts, k_max)], dim=2)
        logits = logits.masked_fill(key_pad[:, :, None, None, :], float("-inf"))
    a = logits.softmax(-1)
    o = torch.einsum("bfhlm,bfmhd->bflhd", a, v).reshape(B, FR, k_max + 1, T)
    att = o @ blk.attn_out.weight.T + blk.attn_out.bias
    s1 = s0 + att if enc.block.residual else att  # residual=False: S1 = MHSA(LN S0) exactly
    h2 = F.layer_norm(s1, (T,), blk.norm2.weight, blk.norm2.bias, 1e-6)
    mlp = F.gelu(h2 @ blk.fc1.weight.T + blk.fc1.bias) @ blk.fc2.weight.T + blk.fc2.bias
    s2 = s1 + mlp if enc.block.residual else mlp  # residual=False: S2 = MLP(LN S1) exactly
    if enc.pool == "cls":
        pooled = s2[:, :, 0]
    elif enc.padding == "zero":
        pooled = s2[:, :, 1:].mean(2)
    else:
        real = (~_padded(counts, k_max))[..., None].float()
        pooled = (s2[:, :, 1:] * real).sum(2) / real.sum(2).clamp(min=1)
    return pooled.reshape(B, FR * T), a[:, :, :, 0]


@pytest.mark.parametrize("residual,pool,padding", VARIANTS)
def test_shapes_finite_and_attention_rows(residual, pool, padding):
    enc = _encoder(residual, pool, padding)
    x, counts = _batch()
    out = enc(x, counts)
    assert out.shape == (B, 128) and enc.output_size == 128 and torch.isfinite(out).all()
    att = enc.attention_weights(x, counts)
    assert att.shape == (B, FR, H, 1 + K) and (att >= 0).all()
    torch.testing.assert_close(att.sum(-1), torch.ones(B, FR, H))


@pytest.mark.parametrize("residual,pool,padding", VARIANTS)
def test_matches_functional_reimplementation(residual, pool, padding):
    enc = _encoder(residual, pool, padding)
    x, counts = _batch()
    want, want_att = _reference(enc, x, counts)
    with torch.no_grad():
        torch.testing.assert_close(enc(x, counts), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(enc.attention_weights(x, counts), want_att, atol=1e-6, rtol=1e-5)


def test_residual_flag_changes_the_maths():
    plain, res = _encoder(False, "cls", "zero"), _encoder(True, "cls", "zero")
    res.load_state_dict(plain.state_dict())  # same weights, only the residual connections differ
    x, counts = _batch()
    assert not torch.allclose(plain(x, counts), res(x, counts), atol=1e-3)


def test_same_generator_same_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b, c = (_encoder(False, "cls", "trainable", seed=s) for s in (7, 7, 8))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), (_, pb), (_, pc) in zip(a.state_dict().items(), b.state_dict().items(),
                                            c.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
        if name not in ("block.norm1.weight", "block.norm1.bias", "block.norm2.weight", "block.norm2.bias"):
            assert not torch.equal(pa, pc), name
    pa, pb = (PixelEncoder(4, [32, 64], [5, 5], [5, 5], [3, 1], 84, generator=_gen(3)) for _ in range(2))
    assert all(torch.equal(u, v) for u, v in zip(pa.parameters(), pb.parameters(), strict=True))


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_masked_ignores_padded_rows(pool):
    enc = _encoder(False, pool, "masked")
    x, counts = _batch()
    noisy = torch.where(_padded(counts, K)[..., None], 5.0 * torch.randn(x.shape, generator=_gen(9)), x)
    assert not torch.equal(noisy, x)
    with torch.no_grad():
        assert torch.equal(enc(noisy, counts), enc(x, counts))
        att = enc.attention_weights(noisy, counts)  # [B, F, H, 1+K]
    assert (att[:, :, :, 1:][_padded(counts, K)[:, :, None, :].expand(-1, -1, H, -1)] == 0).all()
    assert (att[:, :, :, 0] > 0).all()  # the cls key is always attended (a frame with 0 rows: weight 1)
    assert torch.allclose(att[0, 0, :, 0], torch.ones(H))
    wide = _encoder(False, pool, "masked", k_max=K + 3)
    wide.load_state_dict(enc.state_dict())
    with torch.no_grad():  # extra zero rows are invisible to the masked variant
        torch.testing.assert_close(wide(F.pad(x, (0, 0, 0, 3)), counts), enc(x, counts), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_trainable_pad_replaces_projected_padded_rows(pool):
    enc = _encoder(False, pool, "trainable")
    x, counts = _batch()
    s0 = enc.sequences(x, counts)  # [B, F, 1+K, T]
    pad = _padded(counts, K)
    assert torch.equal(s0[:, :, 0], enc.cls_token.expand(B, FR, T))
    assert torch.equal(s0[:, :, 1:][pad], enc.pad_token.expand(int(pad.sum()), T))
    torch.testing.assert_close(s0[:, :, 1:][~pad], enc.token_proj(x)[~pad])
    noisy = torch.where(pad[..., None], 5.0 * torch.randn(x.shape, generator=_gen(9)), x)
    out = enc(x, counts)
    with torch.no_grad():
        assert torch.equal(enc(noisy, counts), out)
    out.sum().backward()
    assert enc.pad_token.grad is not None and enc.pad_token.grad.abs().sum() > 0


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_zero_padding_rows_contribute_as_in_released_code(pool):
    enc = _encoder(False, pool, "zero")
    wide = _encoder(False, pool, "zero", k_max=K + 3)
    wide.load_state_dict(enc.state_dict())
    x, counts = _batch()
    with torch.no_grad():
        narrow_out, wide_out = enc(x, counts), wide(F.pad(x, (0, 0, 0, 3)), counts)
        # extra all-zero rows become the projection bias and take attention mass / enter the mean
        assert not torch.allclose(narrow_out, wide_out, atol=1e-4)
        # counts do not enter the maths of the zero variant
        assert torch.equal(enc(x, torch.full_like(counts, K)), narrow_out)


def test_half_precision_input_is_cast():
    enc = _encoder(False, "cls", "zero")
    x, counts = _batch()
    with torch.no_grad():
        torch.testing.assert_close(enc(x.half(), counts), enc(x.half().float(), counts))


def test_bad_arguments_and_shapes_raise():
    with pytest.raises(ValueError, match="pool"):
        _encoder(False, "max", "zero")
    with pytest.raises(ValueError, match="padding"):
        _encoder(False, "cls", "none")
    with pytest.raises(ValueError, match="divisible"):
        PatchTransformerEncoder(D, 30, 8, 128, 1e-6, False, "cls", "zero", 4, K)
    enc = _encoder(False, "cls", "zero")
    x, counts = _batch()
    with pytest.raises(ValueError, match="x must be"):
        enc(x[:, :3], counts[:, :3])
    with pytest.raises(ValueError, match="counts must be"):
        enc(x, counts[:, :3])


def test_parameter_counts_pinned():
    # token_proj 64·32+32 = 2080; cls 32; norm1 2·32 = 64; qkv 32·96+96 = 3168; attn_out 32·32+32 = 1056;
    # norm2 64; fc1 32·128+128 = 4224; fc2 128·32+32 = 4128  -> 14816 (the head's 128-d input: 4 frames × 32)
    kwargs = dict(residual=False, pool="cls", frames=4, k_max=28)
    zero = PatchTransformerEncoder(64, 32, 8, 128, 1e-6, padding="zero", **kwargs)
    trainable = PatchTransformerEncoder(64, 32, 8, 128, 1e-6, padding="trainable", **kwargs)
    masked = PatchTransformerEncoder(64, 32, 8, 128, 1e-6, padding="masked", **kwargs)
    # conv1 4·32·5·5+32 = 3232; conv2 32·64·5·5+64 = 51264 -> 54496
    cnn = PixelEncoder(4, [32, 64], [5, 5], [5, 5], [3, 1], 84)
    counts = {"transformer_zero": parameter_count(zero), "transformer_trainable": parameter_count(trainable),
              "transformer_masked": parameter_count(masked), "pixel_cnn": parameter_count(cnn)}
    print("parameter counts:", counts)
    assert counts == {"transformer_zero": 14_816, "transformer_trainable": 14_816 + 32,
                      "transformer_masked": 14_816, "pixel_cnn": 54_496}
    assert zero.output_size == 128 and cnn.output_size == 1024
    assert parameter_count(TransformerBlock(32, 8, 128, 1e-6, False)) == 64 + 3168 + 1056 + 64 + 4224 + 4128


def test_pixel_encoder_gray84_and_rgb96():
    assert [conv_output_size(84, 5, 5, 3), conv_output_size(18, 5, 5, 1)] == [18, 4]  # (84+6-5)/5+1, (18+2-5)/5+1
    assert [conv_output_size(96, 5, 5, 3), conv_output_size(20, 5, 5, 1)] == [20, 4]  # 97//5+1, 17//5+1
    cnn = PixelEncoder(4, [32, 64], [5, 5], [5, 5], [3, 1], 84, generator=_gen(0))
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8, generator=_gen(1))
    out = cnn(frames)
    assert out.shape == (2, 1024) and out.dtype == torch.float32 and (out >= 0).all()
    torch.testing.assert_close(cnn(frames.float() / 255.0), out)  # uint8 is scaled by 1/255 inside
    rgb = PixelEncoder(12, [32, 64], [5, 5], [5, 5], [3, 1], 96, generator=_gen(0))
    out = rgb(torch.randint(0, 256, (2, 12, 96, 96), dtype=torch.uint8, generator=_gen(1)))
    assert out.shape == (2, rgb.output_size) and rgb.output_size == 1024
    odd = PixelEncoder(3, [8, 16], [3, 3], [2, 2], [0, 0], 20)  # 20 -> 9 -> 4
    assert odd.output_size == 16 * 4 * 4 == odd(torch.zeros(1, 3, 20, 20)).shape[1]
    with pytest.raises(ValueError, match="x must be"):
        cnn(frames[:, :, :80, :80])


def test_to_gray84_values():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3, 96, 96, 3), dtype=np.uint8)
    gray = to_gray84(frames)
    assert gray.shape == (2, 3, 84, 84) and gray.dtype == np.uint8
    expected = cv2.resize(cv2.cvtColor(frames[1, 2], cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(gray[1, 2], expected)
    red = np.zeros((96, 96, 3), dtype=np.uint8)
    red[..., 0] = 255  # RGB order: pure red -> 0.299·255 = 76.245 -> 76
    assert to_gray84(red).shape == (84, 84) and (to_gray84(red) == round(0.299 * 255)).all()
    flat = np.zeros((96, 96, 3), dtype=np.uint8)
    flat[...] = (10, 200, 50)  # 0.299·10 + 0.587·200 + 0.114·50 = 126.09 -> 126
    assert (to_gray84(flat) == 126).all()
    with pytest.raises(ValueError, match="uint8"):
        to_gray84(frames.astype(np.float32))


@pytest.mark.parametrize("residual,padding", list(itertools.product([False, True], ["zero", "trainable", "masked"])))
def test_first_row_shortcut_equals_the_whole_block(residual, padding, monkeypatch):
    """[cls] pooling computes only the block's row 0 (SPEC §7.4): the same features and the same gradients as the
    whole block read at row 0, for every padding (masked keys included)."""
    x, counts = _batch()
    outs, grads = [], []
    for first_row_only in (True, False):
        monkeypatch.setattr(PatchTransformerEncoder, "first_row_only", first_row_only)
        enc = _encoder(residual, "cls", padding)
        out = enc(x, counts)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters()})
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-5, msg=name)
    blk = _encoder(residual, "cls", padding).block
    s = torch.randn(5, 1 + K, T, generator=_gen(3))
    mask = torch.rand(5, 1 + K, generator=_gen(4)) > 0.3
    mask[:, 0] = True
    for key_mask in (None, mask):
        with torch.no_grad():
            torch.testing.assert_close(blk.forward_first_row(s, key_mask), blk(s, key_mask)[:, 0], atol=1e-6,
                                       rtol=1e-5)
