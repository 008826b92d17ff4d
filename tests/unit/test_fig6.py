"""Fig. 6: the attention set, the newest frame's [cls]-query attention of a SPIRL network, the masks, the script."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from spirl.agents.agent import build_qnetwork, frame_spec
from spirl.agents.attention import attention_set, fig6_masks, newest_frame_attention
from spirl.common.io import write_npz
from spirl.params import REPO_ROOT, ConfigError, load_params, replace, resolve_variant
from spirl.saliency.mae import MAEConfig, MaskedAutoencoder
from spirl.saliency.pretrain import save_model

K, D, F = 6, 8, 4


@pytest.fixture(scope="module")
def params():
    return load_params([REPO_ROOT / "params.yaml", REPO_ROOT / "conf" / "smoke.yaml"])


def keys(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def test_attention_set_hand_worked():
    w, all_valid = np.array([0.5, 0.3, 0.2, 0.0]), np.ones(4, bool)
    assert keys(attention_set(w, all_valid, 0.6)) == [0, 1]
    assert keys(attention_set(w, all_valid, 0.5)) == [0]
    assert keys(attention_set(w, all_valid, 0.8)) == [0, 1]
    assert keys(attention_set(w, all_valid, 1.0)) == [0, 1, 2]  # the zero-weight key is never needed
    assert keys(attention_set(np.array([0.3, 0.3, 0.4]), np.ones(3, bool), 0.6)) == [0, 2]  # tie: lower index
    assert keys(attention_set(np.array([0.25] * 4), np.ones(4, bool), 0.5)) == [0, 1]
    # key 1 invalid: [0.4, 0.2] renormalised to [2/3, 1/3]; 2/3 >= 0.6
    assert keys(attention_set(np.array([0.4, 0.4, 0.2]), np.array([True, False, True]), 0.6)) == [0]
    assert keys(attention_set(np.array([0.1, 0.9, 0.0]), np.array([True, False, True]), 0.6)) == [0]
    assert keys(attention_set(np.array([0.0, 0.9, 0.1]), np.array([True, False, True]), 1.0)) == [2]


def test_attention_set_errors():
    w, valid = np.array([0.5, 0.5]), np.ones(2, bool)
    for mass in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="mass"):
            attention_set(w, valid, mass)
    with pytest.raises(ValueError, match="no valid key"):
        attention_set(w, np.zeros(2, bool), 0.6)
    with pytest.raises(ValueError, match="1-D"):
        attention_set(w, np.ones(3, bool), 0.6)
    with pytest.raises(ValueError, match="not all 0"):
        attention_set(np.array([0.0, 1.0]), np.array([True, False]), 0.6)


def tiny_network(params, variant: str = "spirl", seed: int = 0, **agent):
    p = resolve_variant(params, variant)
    p = replace(p, agent=replace(p.agent, **agent))
    spec = frame_spec("spirl", p.agent, K, D, 48, "float32")
    return build_qnetwork(spec, p.agent, 3, F, torch.Generator().manual_seed(seed))


def stacks(counts: list[list[int]], seed: int = 1) -> torch.Tensor:
    x = torch.randn(len(counts), F, K, D, generator=torch.Generator().manual_seed(seed))  # [B, F, K, D]
    for b, row in enumerate(counts):
        for f, c in enumerate(row):
            x[b, f, c:] = 0
    return x


@torch.no_grad()
def naive_newest(net, x: torch.Tensor, b: int) -> np.ndarray:
    """softmax(q_cls · k / sqrt(d_head)) of the newest frame of example b, by hand; heads averaged, renormalised."""
    enc, block = net.encoder, net.encoder.block
    count = int((x[b, -1].abs().sum(-1) > 0).sum())
    tokens = x[b, -1] @ enc.token_proj.weight.T + enc.token_proj.bias  # [K, T]
    if enc.padding == "trainable":
        tokens[count:] = enc.pad_token
    s = torch.cat([enc.cls_token[None], tokens])  # [1+K, T]
    h = torch.nn.functional.layer_norm(s, (s.shape[1],), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    t, heads = s.shape[1], block.heads
    q = h[0] @ block.qkv.weight[:t].T + block.qkv.bias[:t]  # [T]
    k = h @ block.qkv.weight[t:2 * t].T + block.qkv.bias[t:2 * t]  # [1+K, T]
    dh = t // heads
    mean = np.zeros(1 + K)
    for head in range(heads):
        logits = (k[:, head * dh:(head + 1) * dh] @ q[head * dh:(head + 1) * dh]).double().numpy() / math.sqrt(dh)
        if enc.padding == "masked":
            logits[1 + count:] = -np.inf
        e = np.exp(logits - logits.max())
        mean += e / e.sum() / heads
    out = np.zeros(K)
    out[:count] = mean[1:1 + count] / mean[1:1 + count].sum()
    return out


@pytest.mark.parametrize("padding", ["zero", "trainable", "masked"])
def test_newest_frame_attention_matches_naive(params, padding):
    net = tiny_network(params, padding=padding)
    x = stacks([[6, 2, 0, 3], [1, 6, 6, 6], [4, 4, 4, 0], [3, 3, 3, 1]])
    with torch.no_grad():
        weights, valid = newest_frame_attention(net, x.half())  # the replay's fp16 stacks are accepted
        weights32, _ = newest_frame_attention(net, x.half().float())
    assert weights.shape == valid.shape == (4, K) and weights.dtype == torch.float32
    assert valid.sum(1).tolist() == [3, 6, 0, 1]
    assert torch.equal(weights, weights32)
    sums = weights.sum(1)
    assert torch.allclose(sums[valid.any(1)], torch.ones(3), atol=1e-6) and sums[2] == 0
    assert (weights[~valid] == 0).all()
    for b in (0, 1, 3):
        np.testing.assert_allclose(weights[b].numpy(), naive_newest(net, x.half().float(), b), atol=1e-5)


def test_newest_frame_attention_needs_cls_pool_and_embeddings(params):
    with pytest.raises(ValueError, match="pool 'cls'"):
        newest_frame_attention(tiny_network(params, pool="mean"), stacks([[1, 1, 1, 1]]))
    p = resolve_variant(params, "de_rainbow")
    pixels = build_qnetwork(frame_spec("de_rainbow", p.agent, K, D, 48, "float32"), p.agent, 3, F,
                            torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="embeddings"):
        newest_frame_attention(pixels, torch.zeros(1, F, 84, 84, dtype=torch.uint8))


def test_fig6_masks():
    indices = np.array([7, 2, 5, 0, -1, -1])  # slot j holds patch indices[j]; slots 4, 5 padded
    att = np.array([False, True, False, True, False, False])
    m = fig6_masks(indices, 4, att, grid=3)
    assert keys(m["selected"]) == [5, 7] and keys(m["both"]) == [0, 2] and keys(m["attention"]) == []
    assert all(v.shape == (9,) and v.dtype == bool for v in m.values())
    with pytest.raises(ValueError, match="padded"):
        fig6_masks(indices, 4, np.array([False] * 4 + [True, False]), 3)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        fig6_masks(indices, 4, att, grid=2)


def load_script():
    spec = importlib.util.spec_from_file_location("make_fig6", REPO_ROOT / "src" / "make_fig6.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fig6_inputs(params, tmp_path) -> list[str]:
    """A random-weight 48-px MAE, a random-weight Seaquest policy (K_max 7 = floor(36 * 0.20), Seaquest's adopted
    mr), 14 random frames in 2 episodes and an mr record, written to tmp_path; the script's common arguments."""
    save_model(MaskedAutoencoder(MAEConfig(img_size=48), generator=torch.Generator().manual_seed(0)),
               tmp_path / "mae.npz")
    (tmp_path / "mr.json").write_text(json.dumps({"result": {"mr_star": 0.5}}))
    p = resolve_variant(params, "spirl")
    net = build_qnetwork(frame_spec("spirl", p.agent, 7, 64, 48, "float16"), p.agent, 5, F,
                         torch.Generator().manual_seed(3))
    write_npz(tmp_path / "weights.npz", {k: v.numpy() for k, v in net.state_dict().items()})
    rng = np.random.default_rng(0)
    write_npz(tmp_path / "frames.npz", {"frames": rng.integers(0, 256, (14, 48, 48, 3), dtype=np.uint8),
                                        "episodes": np.repeat(np.arange(2, dtype=np.int32), [9, 5])})
    inputs = {"frames": "frames.npz", "model": "mae.npz", "mr": "mr.json", "weights": "weights.npz"}
    common = ["--params", str(REPO_ROOT / "params.yaml"), str(REPO_ROOT / "conf" / "smoke.yaml"), "--game", "Seaquest"]
    return common + [arg for name, file in inputs.items() for arg in (f"--in-{name}", str(tmp_path / file))]


def test_script_end_to_end_deterministic(params, tmp_path):
    """A random-weight 48-px MAE and a random-weight Seaquest policy: two runs give the same PNG bytes."""
    script, threads = load_script(), torch.get_num_threads()
    common = fig6_inputs(params, tmp_path)
    try:
        for out in ("a.png", "b.png"):
            script.main([*common, "--variant", "spirl", "--out-figure", str(tmp_path / out)])
        assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
        ts = script.time_points(np.repeat(np.arange(2), [9, 5]), 4, 3)
        assert ts.tolist() == [3, 5, 8]  # linspace 0, 2.5, 5 rounds half to even
        ts = script.time_points(np.repeat(np.arange(3), [4, 9, 5]), 4, 3)  # the first episode is too short
        assert ts.tolist() == [7, 9, 12]  # the second one's frames 4-12, from their 4th on
        with pytest.raises(ValueError, match="too few"):
            script.time_points(np.repeat(np.arange(2), [5, 4]), 4, 3)
        with np.load(tmp_path / "weights.npz") as data:
            weights = {k: data[k] for k in data.files}
        assert script.n_actions_from_weights(weights, 51) == 5
        with pytest.raises(ConfigError, match="atoms"):
            script.n_actions_from_weights(weights, 17)
        for variant in ("spirl_mr50_mean", "de_rainbow"):
            with pytest.raises(ConfigError, match=variant):
                script.main([*common, "--variant", variant, "--out-figure", str(tmp_path / "x.png")])
    finally:
        torch.set_num_threads(threads)


def test_a_variant_scoring_with_the_wu_mask_shows_its_selection(params, tmp_path):
    """Fig. 6 of a variant whose scorer is Wu et al.'s mask: the mask comes from --in-wu (a clear error without it),
    and the selected patches shown are the mask's dynamic-K selection, not the MAE's."""
    from spirl.saliency.selection import select_batched
    from spirl.saliency.wu.model import WuAttention
    from spirl.saliency.wu.scores import patch_scores
    from spirl.saliency.wu.training import load_model as load_wu
    from spirl.saliency.wu.training import save_model as save_wu

    script, threads = load_script(), torch.get_num_threads()
    common = fig6_inputs(params, tmp_path)
    save_wu(WuAttention(torch.Generator().manual_seed(1)), tmp_path / "wu.npz")
    try:
        with pytest.raises(ConfigError, match="--in-wu"):
            script.main([*common, "--variant", "spirl_wu", "--out-figure", str(tmp_path / "x.png")])
        script.main([*common, "--variant", "spirl_wu", "--in-wu", str(tmp_path / "wu.npz"),
                     "--out-figure", str(tmp_path / "wu.png")])
        assert (tmp_path / "wu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        torch.set_num_threads(threads)
    p = resolve_variant(params, "spirl_wu")
    with np.load(tmp_path / "frames.npz") as data:
        frames, episodes = data["frames"], data["episodes"]
    with np.load(tmp_path / "weights.npz") as data:
        weights = {k: data[k] for k in data.files}
    from spirl.saliency.pretrain import load_model

    ts, masks, ks = script.fig6_data(p, "Seaquest", load_model(tmp_path / "mae.npz"),
                                     json.loads((tmp_path / "mr.json").read_text()), weights, frames, episodes,
                                     tmp_path / "wu.npz")
    scores = patch_scores(load_wu(tmp_path / "wu.npz"), frames[ts], 48, 8)  # [T, 36]
    indices, counts = select_batched(scores, "dynamic", 7, p.saliency.xscale)
    assert ks.tolist() == counts.tolist()
    for i in range(len(ts)):
        shown = set(keys(masks[i]["selected"])) | set(keys(masks[i]["both"]))
        assert shown == set(indices[i, :counts[i]].tolist())
