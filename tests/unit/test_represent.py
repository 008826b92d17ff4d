"""The per-frame representation of each variant (spirl.train.make_represent): what runs on every new frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl import represent as T
from spirl.agent import frame_spec
from spirl.config import REPO_ROOT, load_params, resolve_variant
from spirl.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency import ErrorMapSettings, embed_selected, error_map
from spirl.selection import select_batched

SETTINGS = ErrorMapSettings("normalized", 100, None)


def _setup(variant: str, k_max: int):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    mae = MaskedAutoencoder(MAEConfig(img_size=32), generator=torch.Generator().manual_seed(0)).eval()
    spec = frame_spec("spirl", params.agent, k_max, 64, 32, "float32")
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    return params, mae, spec, frames


def test_mae_all_computes_no_error_map(monkeypatch):
    """MAE-All keeps all N patches: an error map (~31 GFLOP a frame at 96 px) would be computed and ignored."""
    params, mae, spec, frames = _setup("mae_all", 16)

    def forbidden(*args, **kwargs):
        raise AssertionError("mae_all must not compute an error map")

    monkeypatch.setattr(T, "error_map", forbidden)
    reps = T.make_represent(spec, params, mae, 16, SETTINGS)(frames)  # [3, 16, 64]
    everything = torch.arange(16).expand(3, 16)
    expected = embed_selected(mae, frames, everything, torch.full((3,), 16), 16).numpy()
    np.testing.assert_array_equal(reps, expected)
    assert (np.abs(reps).sum(-1) > 0).all()  # no padding: every patch is kept


@pytest.mark.parametrize(("variant", "k_max"), [("spirl", 5), ("fixed_k_star", 4)])
def test_selecting_variants_use_the_error_map_they_are_given(monkeypatch, variant, k_max):
    params, mae, spec, frames = _setup(variant, k_max)
    seen = []

    def spy(model, batch, settings):
        seen.append(settings)
        return error_map(model, batch, settings)

    monkeypatch.setattr(T, "error_map", spy)
    reps = T.make_represent(spec, params, mae, k_max, SETTINGS)(frames)
    assert seen == [SETTINGS]
    indices, counts = select_batched(error_map(mae, frames, SETTINGS), params.saliency.selection, k_max, 1.0)
    np.testing.assert_array_equal(reps, embed_selected(mae, frames, indices, counts, k_max).numpy())
