"""Error map E (SPEC §4) against a naive per-target reference, locality, batching; frame embedding (SPEC §7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.saliency.error_maps import (
    ErrorMapSettings,
    decoder_sequence_bytes,
    embed_selected,
    error_map,
    frames_to_tensor,
    max_sequences_for,
    neighbourhood_groups,
    surroundings_predictions,
)
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder, normalized_patches, patchify

FP32 = ErrorMapSettings("normalized", 10**6, None)  # effectively one pass per neighbour-count group


def _model(img_size: int, seed: int = 0) -> MaskedAutoencoder:
    """A model moved away from its (symmetric) init: noise on every parameter, biases and norms included."""
    gen = torch.Generator().manual_seed(seed)
    model = MaskedAutoencoder(MAEConfig(img_size=img_size), generator=gen)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _frames(count: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _neighbours(row: int, col: int, grid: int) -> list[int]:
    return [r * grid + c for r in range(grid) for c in range(grid)
            if max(abs(r - row), abs(c - col)) == 1]


def _naive_error_map(model: MaskedAutoencoder, frames: np.ndarray) -> torch.Tensor:
    """One encoder/decoder pass per frame and target, full decode, visible set built by hand."""
    grid = model.config.grid
    out = torch.zeros(len(frames), grid * grid)
    with torch.no_grad():
        for b in range(len(frames)):
            img = torch.from_numpy(frames[b:b + 1]).permute(0, 3, 1, 2).float() / 255.0
            patches = patchify(img, model.config.patch_size)  # [1, N, P]
            embedded = model.embed(patches)  # [1, N, D]
            target = normalized_patches(patches, 1e-6)[0]  # [N, P]
            for t in range(grid * grid):
                vis = torch.tensor([_neighbours(t // grid, t % grid, grid)])  # [1, k]
                pred = model.decode(model.encode(embedded[:, vis[0]]), vis)[0, t]  # [P]
                out[b, t] = ((pred - target[t]) ** 2).mean()
    return out


@pytest.mark.parametrize(("img_size", "count"), [(96, 2), (32, 3)])
def test_error_map_equals_naive_reference(img_size, count):
    model = _model(img_size)
    frames = _frames(count, img_size, seed=img_size)
    fast = error_map(model, frames, FP32)
    assert fast.shape == (count, (img_size // 8) ** 2) and fast.dtype == torch.float32
    naive = _naive_error_map(model, frames)
    assert torch.allclose(fast, naive, atol=1e-5, rtol=1e-5)
    assert fast.std() > 0.05 * fast.mean()  # not a degenerate constant map


def test_decode_rows_equals_full_decode_row():
    model = _model(48, seed=3)
    gen = torch.Generator().manual_seed(4)
    latent = torch.randn(5, 1 + 8, 64, generator=gen)
    ids = torch.stack([torch.randperm(36, generator=gen)[:8] for _ in range(5)])  # [5, 8]
    rows = torch.tensor([0, 35, 7, 7, 20])
    with torch.no_grad():
        full = model.decode(latent, ids)  # [5, 36, 192]
        fast = model.decode_rows(latent, ids, rows)  # [5, 192]
    assert torch.allclose(fast, full[torch.arange(5), rows], atol=1e-5)


@pytest.mark.parametrize(("row", "col"), [(5, 7), (0, 0), (11, 4)])
def test_perturbing_one_patch_changes_only_its_3x3_block(row, col):
    model = _model(96, seed=1)
    frames = _frames(1, 96, seed=5)
    before = error_map(model, frames, FP32)[0].reshape(12, 12)
    frames[0, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] = 0  # patch (row, col) -> red stripes on black
    frames[0, row * 8:(row + 1) * 8:2, col * 8:(col + 1) * 8, 0] = 255
    after = error_map(model, frames, FP32)[0].reshape(12, 12)
    inside = torch.zeros(12, 12, dtype=torch.bool)
    inside[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2] = True
    change = (after - before).abs()
    assert change[~inside].max() <= 1e-6
    # the patch itself (new target) and every neighbour (new input) change, by well over the tolerance
    assert change[inside].min() > 1e-5


def test_batching_and_chunking_do_not_change_the_map():
    model = _model(48, seed=2)
    frames = _frames(5, 48, seed=6)
    whole = error_map(model, frames, FP32)
    single = torch.cat([error_map(model, frames[b:b + 1], FP32) for b in range(5)])
    assert torch.allclose(whole, single, atol=1e-6, rtol=1e-6)
    for chunk in (1, 2, 5, 8, 36 * 5 + 1):  # decoder sequences per pass: one, a few, a frame's worth and more
        budgeted = ErrorMapSettings("normalized", chunk, None)
        assert torch.allclose(error_map(model, frames, budgeted), whole, atol=1e-6, rtol=1e-6)
    assert torch.allclose(error_map(model, torch.from_numpy(frames), FP32), whole, atol=0, rtol=0)
    assert error_map(model, frames[:0], FP32).shape == (0, 36)


def test_error_map_bf16_is_close_and_mode_is_restored():
    model = _model(32, seed=4)
    frames = _frames(2, 32, seed=7)
    model.train()
    fp32 = error_map(model, frames, FP32)
    assert model.training  # previous mode restored
    bf16 = error_map(model, frames, ErrorMapSettings('normalized', 10**6, torch.bfloat16))
    assert bf16.dtype == torch.float32
    assert torch.allclose(bf16, fp32, rtol=0.1, atol=0.05)


def test_flat_frame_has_zero_targets():
    # a flat frame: every normalised target is 0, so E_t = mean(pred²) >= 0 and the map is finite
    model = _model(32, seed=5)
    frames = np.full((1, 32, 32, 3), 77, dtype=np.uint8)
    errors = error_map(model, frames, FP32)
    with torch.no_grad():
        patches = patchify(frames_to_tensor(frames, "cpu"), 8)
    assert torch.equal(normalized_patches(patches, 1e-6), torch.zeros_like(patches))
    assert torch.isfinite(errors).all() and (errors > 0).all()


def test_neighbourhood_groups_grid_12():
    groups = neighbourhood_groups(12)
    assert [(len(t), v.shape[1]) for t, v in groups] == [(4, 3), (40, 5), (100, 8)]
    assert sorted(torch.cat([t for t, _ in groups]).tolist()) == list(range(144))
    lookup = {int(t): v.tolist() for targets, vis in groups for t, v in zip(targets, vis, strict=True)}
    assert lookup[0] == [1, 12, 13]  # corner (0, 0)
    assert lookup[143] == [130, 131, 142]  # corner (11, 11)
    assert lookup[5] == [4, 6, 16, 17, 18]  # top edge (0, 5)
    assert lookup[72] == [60, 61, 73, 84, 85]  # left edge (6, 0)
    assert lookup[67] == [54, 55, 56, 66, 68, 78, 79, 80]  # interior (5, 7)
    for targets, _ in groups:
        assert targets.tolist() == sorted(targets.tolist())


def test_neighbourhood_groups_small_grids():
    (targets, vis), = neighbourhood_groups(2)
    assert targets.tolist() == [0, 1, 2, 3] and vis.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    (targets, vis), = neighbourhood_groups(1)
    assert targets.tolist() == [0] and vis.shape == (1, 0)
    assert [(len(t), v.shape[1]) for t, v in neighbourhood_groups(3)] == [(4, 3), (4, 5), (1, 8)]
    assert [(len(t), v.shape[1]) for t, v in neighbourhood_groups(4)] == [(4, 3), (8, 5), (4, 8)]


def _embed_one(model: MaskedAutoencoder, frame: np.ndarray, ids: list[int]) -> torch.Tensor:
    """Per-frame reference: encode [cls] + the selected patches, drop cls, add pos again.  [K, D]"""
    with torch.no_grad():
        patches = patchify(frames_to_tensor(frame[None], "cpu"), 8)
        tokens = model.embed(patches)[:, ids]  # [1, K, D]
        return model.encode(tokens)[0, 1:] + model.encoder_pos_embed[0, 1:][ids]


def test_embed_selected_equals_per_frame_computation():
    model = _model(96, seed=6)
    frames = _frames(4, 96, seed=8)
    k_max = 10
    rng = np.random.default_rng(9)
    counts = np.array([3, 10, 0, 7])
    indices = np.full((4, k_max), -1)  # padding marked -1 (must be ignored)
    for b, c in enumerate(counts):
        indices[b, :c] = rng.choice(144, c, replace=False)
    out = embed_selected(model, frames, torch.from_numpy(indices), torch.from_numpy(counts), k_max)
    assert out.shape == (4, k_max, 64) and out.dtype == torch.float32
    for b, c in enumerate(counts):
        ref = _embed_one(model, frames[b], indices[b, :c].tolist())
        assert torch.allclose(out[b, :c], ref, atol=1e-5, rtol=1e-5)
        assert torch.equal(out[b, c:], torch.zeros(k_max - c, 64))
    assert (out[1].abs().sum(dim=1) > 0).all()  # counts = k_max: no zero row
    # padding content is irrelevant
    indices[0, 3:] = 143
    assert torch.equal(embed_selected(model, frames, indices, counts, k_max), out)


def test_embed_selected_adds_the_pos_embed_again():
    model = _model(96, seed=7)
    frames = _frames(1, 96, seed=10)
    ids = [50, 3, 77, 140]  # order of rows = order given
    out = embed_selected(model, frames, torch.tensor([ids]), torch.tensor([4]), 4)[0]
    with torch.no_grad():
        patches = patchify(frames_to_tensor(frames, "cpu"), 8)
        encoded = model.encode(model.embed(patches)[:, ids])[0, 1:]  # [4, D]
    pos = model.encoder_pos_embed[0, 1:][ids]
    assert torch.allclose(out - encoded, pos, atol=1e-5)
    assert pos.abs().sum() > 1 and not torch.allclose(out, encoded, atol=1e-2)
    swapped = embed_selected(model, frames, torch.tensor([ids[::-1]]), torch.tensor([4]), 4)[0]
    assert torch.allclose(swapped, out.flip(0), atol=1e-5)


def test_error_map_is_the_mse_of_the_surroundings_predictions():
    model = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(4))
    frames = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    target = normalized_patches(patchify(frames_to_tensor(frames, "cpu"), 8), model.config.norm_pix_eps)
    pred = surroundings_predictions(model, frames, 10**6)  # [3, 16, 192]
    assert pred.shape == (3, 16, 192)
    torch.testing.assert_close(((pred - target) ** 2).mean(-1), error_map(model, frames, FP32), atol=1e-6, rtol=1e-5)


def test_benchmark_reference_equals_error_map():
    from spirl.saliency.error_maps import error_map_reference

    model = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(6))
    frames = np.random.default_rng(7).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    reference = torch.stack([error_map_reference(model, f) for f in frames])
    torch.testing.assert_close(reference, error_map(model, frames, FP32), atol=1e-5, rtol=1e-5)


def test_raw_error_space_is_the_mse_in_pixel_units():
    # raw E = mean_P (pred * sqrt(var + eps) + mean - x)^2 with the patch's own (unbiased) statistics, by hand
    model = _model(32, seed=8)
    frames = _frames(2, 32, seed=9)
    frames[0, :8, :8] = 40  # one flat patch: its raw error is ~0 whatever the prediction
    patches = patchify(frames_to_tensor(frames, "cpu"), 8)  # [2, 16, 192]
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True, unbiased=True)
    pred = surroundings_predictions(model, frames, 10**6)  # normalised-pixel space
    by_hand = ((pred * (var + 1e-6).sqrt() + mean - patches) ** 2).mean(-1)
    raw = error_map(model, frames, ErrorMapSettings("raw", 10**6, None))
    torch.testing.assert_close(raw, by_hand, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(raw, error_map(model, frames, FP32) * (var[..., 0] + 1e-6), atol=1e-8, rtol=1e-5)
    assert raw[0, 0] < 1e-5 < raw[1, 0]
    with pytest.raises(ValueError, match="error_space"):
        ErrorMapSettings("pixels", 10, None)


def test_a_pass_never_exceeds_its_sequence_budget(monkeypatch):
    """Every decoder call of an error map (and of Fig. 2's predictions) holds <= max_sequences sequences, and the
    budgeted map equals one unbudgeted call: values to 1e-6, dynamic-K selections identical."""
    from spirl.saliency.selection import dynamic_k_batched

    model = _model(48, seed=10)
    frames = _frames(6, 48, seed=11)  # 6 frames x 36 targets = 216 decoder sequences
    whole = error_map(model, frames, FP32)
    sizes = []
    original = MaskedAutoencoder.decode_rows

    def spy(self, latent, ids_keep, rows):
        sizes.append(len(latent))
        return original(self, latent, ids_keep, rows)

    monkeypatch.setattr(MaskedAutoencoder, "decode_rows", spy)
    for budget in (1, 7, 50):
        sizes.clear()
        budgeted = error_map(model, frames, ErrorMapSettings("normalized", budget, None))
        assert max(sizes) <= budget and sum(sizes) == 6 * 36
        torch.testing.assert_close(budgeted, whole, atol=1e-6, rtol=1e-6)
        assert torch.equal(dynamic_k_batched(budgeted, 20, 1.0)[0], dynamic_k_batched(whole, 20, 1.0)[0])
        sizes.clear()
        surroundings_predictions(model, frames, budget)
        assert max(sizes) <= budget and sum(sizes) == 6 * 36


def test_sequence_budget_from_memory():
    paper = MAEConfig()  # Tab. 4 at 96x96: 145 tokens of width 128, 8 heads, MLP ratio 4
    assert decoder_sequence_bytes(paper) == 4 * (145 * 128 * 16 + 2 * 8 * 145 * 145) == 2_533_440
    assert max_sequences_for(paper, 4096) == 4096 * 2**20 // 2_533_440 == 1695  # ~11.8 frames of 144 targets
    assert max_sequences_for(paper, 3) == 1
    with pytest.raises(ValueError, match="saliency_memory_mb = 2 holds no decoder sequence"):
        max_sequences_for(paper, 2)
    with pytest.raises(ValueError, match="max_sequences"):
        ErrorMapSettings("normalized", 0, None)


def test_normalized_maps_give_both_error_spaces():
    from spirl.saliency.error_maps import in_space
    from spirl.saliency.mr import normalized_maps

    model = _model(32, seed=12)
    frames = _frames(5, 32, seed=13)
    calls = []
    errors, variances, share = normalized_maps(model, frames, 2, FP32, on_batch=calls.append)  # 3 calls: 2, 2, 1
    assert share == 1.0
    inc, _, inc_share = normalized_maps(model, frames, 2, FP32, starts=np.array([1, 0, 0, 1, 0], bool))
    np.testing.assert_allclose(inc, errors, rtol=1e-6, atol=1e-7)  # random frames: every block changes
    assert inc_share == 1.0
    assert calls == [2, 2, 1] and errors.shape == variances.shape == (5, 16) and errors.dtype == np.float32
    np.testing.assert_allclose(in_space(errors, variances, "normalized", 1e-6), error_map(model, frames, FP32).numpy(),
                               rtol=1e-6, atol=1e-7)
    raw = error_map(model, frames, ErrorMapSettings("raw", 10**6, None)).numpy()
    np.testing.assert_allclose(in_space(errors, variances, "raw", 1e-6), raw, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="error_space"):
        in_space(errors, variances, "pixels", 1e-6)


@pytest.mark.parametrize("visible", [3, 5, 8])
def test_first_block_shortcut_equals_the_plain_projection(visible):
    """SPEC §4: every masked row enters the first decoder block as [mask] + position, so its norm and q/k/v are
    computed once per call; the cls and visible rows per sequence. Equal to projecting every row."""
    model = _model(48, seed=7)
    gen = torch.Generator().manual_seed(8)
    latent = torch.randn(4, 1 + visible, 64, generator=gen)
    ids = torch.stack([torch.randperm(36, generator=gen)[:visible] for _ in range(4)])  # [4, k]
    first = model.decoder_blocks[0]
    with torch.no_grad():
        x = model._decoder_input(latent, ids)  # [4, 37, 128]
        plain = first.qkv(first.norm1(x))
        fast = model._first_qkv(first, x, ids)
        torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(first.forward_qkv(x, fast), first(x), atol=1e-6, rtol=1e-5)


def test_error_maps_equal_with_and_without_the_first_block_shortcut(monkeypatch):
    """MaskedAutoencoder.first_block_shortcut off runs the plain first block: the same error maps to 1e-6."""
    model = _model(48, seed=9)
    frames = np.random.default_rng(10).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    fast = error_map(model, frames, FP32)
    monkeypatch.setattr(type(model), "first_block_shortcut", False)
    plain = error_map(model, frames, FP32)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5)
