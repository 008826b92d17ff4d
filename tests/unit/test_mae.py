"""The MAE (SPEC §3): exact sizes, patch layout, sin-cos values, masking, targets, loss, init, training."""

from __future__ import annotations

import math

import pytest
import torch

from spirl.saliency.mae import (
    MAEConfig,
    MaskedAutoencoder,
    normalized_patches,
    parameter_counts,
    patchify,
    random_keep_indices,
    sincos_pos_embed_2d,
    unpatchify,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_parameter_counts_are_the_papers():
    model = MaskedAutoencoder(MAEConfig(), generator=_gen(0))
    counts = parameter_counts(model)
    assert counts == {"encoder": 162_432, "decoder": 628_160, "total": 790_784}
    assert counts["total"] == counts["encoder"] + counts["decoder"] + 64 + 128  # + cls + mask token
    assert not model.encoder_pos_embed.requires_grad and "encoder_pos_embed" not in dict(model.named_parameters())
    assert model.encoder_pos_embed.shape == (1, 145, 64) and model.decoder_pos_embed.shape == (1, 145, 128)


def test_config_properties_and_validation():
    cfg = MAEConfig()
    assert (cfg.grid, cfg.num_patches, cfg.patch_dim) == (12, 144, 192)
    assert (MAEConfig(img_size=48).grid, MAEConfig(img_size=32).num_patches) == (6, 16)
    with pytest.raises(ValueError, match="img_size"):
        MAEConfig(img_size=100)
    with pytest.raises(ValueError, match="encoder_dim"):
        MAEConfig(encoder_dim=66, encoder_heads=4)
    with pytest.raises(ValueError, match="decoder_dim"):
        MAEConfig(decoder_dim=128, decoder_heads=7)


def test_small_config_builds_and_runs():
    cfg = MAEConfig(img_size=48)
    model = MaskedAutoencoder(cfg, generator=_gen(0))
    imgs = torch.rand(3, 3, 48, 48, generator=_gen(1))
    loss, pred, mask = model(imgs, keep=9, generator=_gen(2), loss_on="all")
    assert pred.shape == (3, 36, 192) and mask.shape == (3, 36)
    assert torch.isfinite(loss) and mask.sum(dim=1).tolist() == [27.0, 27.0, 27.0]
    assert model.encoder_pos_embed.shape == (1, 37, 64)


@pytest.mark.parametrize(("chans", "grid"), [(3, 12), (1, 12), (3, 4), (1, 4)])
def test_patchify_unpatchify_round_trip_is_exact(chans, grid):
    imgs = torch.rand(2, chans, grid * 8, grid * 8, generator=_gen(grid + chans))
    patches = patchify(imgs, 8)
    assert patches.shape == (2, grid * grid, 64 * chans)
    assert torch.equal(unpatchify(patches, 8, chans, grid), imgs)


def test_patch_layout_is_row_major_patches_and_channel_last_values():
    imgs = torch.zeros(1, 3, 16, 16)  # 2×2 patches of 8×8
    imgs[0, 2, 9, 3] = 1.0  # channel 2 at y=9, x=3: patch (row 1, col 0) = index 2, inside at (1, 3)
    patches = patchify(imgs, 8)
    assert patches[0, 2, (1 * 8 + 3) * 3 + 2] == 1.0 and patches.sum() == 1.0
    # every value: image[c, y, x] sits in patch (y//8)*2 + x//8 at ((y%8)*8 + x%8)*3 + c
    imgs = torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(1, 3, 16, 16)
    patches = patchify(imgs, 8)
    for c, y, x in [(0, 0, 0), (1, 0, 9), (2, 15, 15), (0, 7, 8), (1, 12, 5)]:
        assert patches[0, (y // 8) * 2 + x // 8, ((y % 8) * 8 + x % 8) * 3 + c] == imgs[0, c, y, x]


def test_sincos_values_by_hand():
    # dim 8 -> dim/4 = 2 frequencies: omega = 10000^(-0/2) = 1 and 10000^(-1/2) = 0.01
    s1, c1, s01, c01 = 0.8414709848078965, 0.5403023058681398, 0.009999833334166664, 0.9999500004166653
    table = sincos_pos_embed_2d(8, 2, cls_token=True)
    assert table.dtype == torch.float32 and table.shape == (5, 8)
    expected = torch.tensor([
        [0, 0, 0, 0, 0, 0, 0, 0],  # cls
        [0, 0, 1, 1, 0, 0, 1, 1],  # patch 0: row 0, col 0
        [s1, s01, c1, c01, 0, 0, 1, 1],  # patch 1: row 0, col 1 (column half first)
        [0, 0, 1, 1, s1, s01, c1, c01],  # patch 2: row 1, col 0
        [s1, s01, c1, c01, s1, s01, c1, c01],  # patch 3: row 1, col 1
    ], dtype=torch.float32)
    assert torch.allclose(table, expected, atol=1e-7, rtol=0)
    assert torch.equal(sincos_pos_embed_2d(8, 2, cls_token=False), table[1:])
    big = sincos_pos_embed_2d(64, 12, cls_token=False)  # patch (row 3, col 5), k = 7 of 16
    omega = 10000 ** (-7 / 16)
    assert math.isclose(big[3 * 12 + 5, 7], math.sin(5 * omega), abs_tol=1e-7)
    assert math.isclose(big[3 * 12 + 5, 32 + 16 + 7], math.cos(3 * omega), abs_tol=1e-7)


def test_random_keep_indices_are_distinct_seeded_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    ids = random_keep_indices(5, 144, 36, _gen(7))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert ids.shape == (5, 36) and ids.dtype == torch.long
    assert all(len(set(row.tolist())) == 36 for row in ids) and 0 <= ids.min() and ids.max() < 144
    assert torch.equal(ids, random_keep_indices(5, 144, 36, _gen(7)))
    assert not torch.equal(ids, random_keep_indices(5, 144, 36, _gen(8)))
    assert not torch.equal(ids[0], ids[1])  # per-sample masks
    assert int(144 * (1 - 0.75)) == 36


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_normalized_patches_moments_and_flat_patch(eps):
    patches = torch.rand(4, 10, 192, generator=_gen(3))
    var = patches.var(dim=-1, correction=1)  # [4, 10]
    out = normalized_patches(patches, eps)
    assert torch.allclose(out.mean(dim=-1), torch.zeros(4, 10), atol=1e-6)
    assert torch.allclose(out.var(dim=-1, correction=1), 1 / (1 + eps / var), atol=1e-5)
    flat = torch.full((1, 256, 192), 0.0)
    flat[0] += (torch.arange(256) / 255.0)[:, None]  # every uint8 grey level
    assert torch.equal(normalized_patches(flat, 1e-6), torch.zeros_like(flat))


def test_loss_all_vs_masked_with_zero_prediction(monkeypatch):
    # zero prediction: patch loss = mean(t²) = (P-1)/P · v/(v+eps), and exactly 0 for a flat patch.
    # The 4 visible patches of each sample are made flat, so loss_all = 12/16 · loss_masked.
    model = MaskedAutoencoder(MAEConfig(img_size=32), generator=_gen(0))
    monkeypatch.setattr(model, "decode", lambda latent, ids: torch.zeros(latent.shape[0], 16, 192))
    visible = random_keep_indices(2, 16, 4, _gen(5))  # the masks forward will draw
    amp = torch.linspace(0.002, 0.01, 16).repeat(2, 1).scatter(1, visible, 0.0)  # [2, 16]
    patches = 0.5 + amp[..., None] * (torch.rand(2, 16, 192, generator=_gen(4)) - 0.5)  # var ≈ amp²/12
    imgs = unpatchify(patches, 8, 3, 4)
    var = patchify(imgs, 8).var(dim=-1, correction=1)  # [2, 16]
    per_patch = (191 / 192 * var / (var + 1e-6)).scatter(1, visible, 0.0)  # [2, 16]
    loss_all, _, mask = model(imgs, keep=4, generator=_gen(5), loss_on="all")
    loss_masked, _, mask2 = model(imgs, keep=4, generator=_gen(5), loss_on="masked")
    assert torch.equal(mask, mask2) and torch.equal(mask, torch.ones(2, 16).scatter(1, visible, 0.0))
    assert math.isclose(loss_all.item(), per_patch.sum().item() / 32, rel_tol=1e-5)
    assert math.isclose(loss_masked.item(), per_patch.sum().item() / 24, rel_tol=1e-5)
    assert math.isclose(loss_all.item(), 0.75 * loss_masked.item(), rel_tol=1e-6)
    assert 0.2 < loss_masked.item() < 0.9


def test_loss_matches_direct_computation_and_mask_marks_hidden_patches():
    model = MaskedAutoencoder(MAEConfig(img_size=32), generator=_gen(0))
    imgs = torch.rand(3, 3, 32, 32, generator=_gen(6))
    loss_all, pred, mask = model(imgs, keep=4, generator=_gen(9), loss_on="all")
    loss_masked, _, _ = model(imgs, keep=4, generator=_gen(9), loss_on="masked")
    ids = random_keep_indices(3, 16, 4, _gen(9))
    assert torch.equal(mask.gather(1, ids), torch.zeros(3, 4)) and mask.sum().item() == 3 * 12
    err = ((pred - normalized_patches(patchify(imgs, 8), 1e-6)) ** 2).mean(dim=-1)  # [3, 16]
    assert torch.allclose(loss_all, err.mean(), rtol=1e-6)
    assert torch.allclose(loss_masked, (err * mask).sum() / mask.sum(), rtol=1e-6)


def test_init_xavier_zero_bias_layernorm_and_reproducible():
    state = torch.random.get_rng_state()
    model = MaskedAutoencoder(MAEConfig(), generator=_gen(11))
    assert torch.equal(torch.random.get_rng_state(), state)  # construction with a generator leaves it alone
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 + 3 * 4 + 1 + 3 * 4 + 1
    for lin in linears:
        fan_out, fan_in = lin.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.95 * bound
        assert math.isclose(lin.weight.std().item(), bound / math.sqrt(3), rel_tol=0.05)
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    qkv = model.encoder_blocks[0].qkv.weight  # one 192×64 matrix
    assert qkv.abs().max() <= math.sqrt(6 / (64 + 192))
    for norm in [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
        assert norm.eps == 1e-6
    tokens = torch.cat([model.cls_token.flatten(), model.mask_token.flatten()])
    assert 0.015 < tokens.std().item() < 0.025 and abs(tokens.mean().item()) < 0.005
    assert torch.equal(model.encoder_pos_embed[0], sincos_pos_embed_2d(64, 12, True))
    again = MaskedAutoencoder(MAEConfig(), generator=_gen(11)).state_dict()
    other = MaskedAutoencoder(MAEConfig(), generator=_gen(12)).state_dict()
    assert all(torch.equal(v, again[k]) for k, v in model.state_dict().items())
    assert not torch.equal(model.patch_embed.weight, other["patch_embed.weight"])


def _train(steps: int) -> list[float]:
    model = MaskedAutoencoder(MAEConfig(img_size=32), generator=_gen(0))
    imgs = torch.rand(8, 3, 32, 32, generator=_gen(1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    mask_gen = _gen(2)
    losses = []
    for _ in range(steps):
        loss, _, _ = model(imgs, keep=4, generator=mask_gen, loss_on="all")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(model(imgs, keep=4, generator=_gen(2), loss_on="all")[0].item())
    return losses


def test_adamw_steps_reduce_loss_deterministically():
    losses = _train(30)
    final_on_first_mask = losses[-1]
    assert final_on_first_mask < 0.8 * losses[0]
    assert sum(losses[-6:-1]) < sum(losses[:5])
    assert _train(30) == losses
