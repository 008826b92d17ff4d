"""bench/bf16_agreement.py's measures of agreement between two precisions' error maps, on hand-made maps."""

from __future__ import annotations

import torch


def test_ranks_follow_the_stable_sort(load_bench):
    bench = load_bench("bf16_agreement")
    errors = torch.tensor([[3.0, 1.0, 2.0, 1.0]])
    assert bench.ranks(errors).tolist() == [[3, 0, 2, 1]]  # the tie 1.0 keeps index order


def test_agreement_of_equal_and_of_swapped_maps(load_bench):
    bench = load_bench("bf16_agreement")
    base = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 9.0],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 9.0]])
    same = bench.agreement(base, base.clone(), 3, 1.0)
    assert same["identical_share"] == 1.0 and same["mean_jaccard"] == 1.0 and same["largest_rank_change"] == 0
    assert same["mean_abs_k_difference"] == 0.0
    other = base.clone()
    other[1, 4], other[1, 5] = 1.0, 0.0  # frame 1: patches 4 and 5 swap their errors
    assert bench.selection_sets(base, 3, 1.0)[1] == {5, 6, 7} and bench.selection_sets(other, 3, 1.0)[1] == {4, 6, 7}
    swapped = bench.agreement(base, other, 3, 1.0)
    assert swapped["identical_share"] == 0.5 and swapped["largest_rank_change"] == 1  # patch 4: rank 5 -> 4
    assert swapped["mean_jaccard"] == (1.0 + 2 / 4) / 2 and swapped["min_jaccard"] == 0.5  # {5,6,7} vs {4,6,7}


def test_speed_only_times_the_four_settings_and_their_two_thread_speedups(load_bench, tmp_path):
    import json

    import numpy as np

    from spirl.params import REPO_ROOT, load_params
    from spirl.saliency.mae import MaskedAutoencoder
    from spirl.saliency.pretrain import mae_config, save_model

    bench = load_bench("bf16_agreement")
    params = load_params([REPO_ROOT / "params.yaml"])
    save_model(MaskedAutoencoder(mae_config(params.mae, 32), generator=torch.Generator().manual_seed(0)),
               tmp_path / "mae.npz")
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "frames.npz", frames=frames, episodes=np.zeros(6, np.int32))
    out = tmp_path / "speed.json"
    assert bench.main(["--params", str(REPO_ROOT / "params.yaml"), "--game", "Frostbite", "--model",
                       str(tmp_path / "mae.npz"), "--frames", str(tmp_path / "frames.npz"), "--n-frames", "6",
                       "--speed-frames", "4", "--speed-only", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    speed = record["results"]["incremental"]
    assert set(speed) == {f"{p}_{t}_threads_s_per_frame" for p in ("fp32", "bf16") for t in (1, 2)}
    assert all(v > 0 for v in speed.values())
    ratio = record["results"]["two_thread_speedup"]["fp32"]
    assert ratio == speed["fp32_1_threads_s_per_frame"] / speed["fp32_2_threads_s_per_frame"]
    assert "capped" not in record["results"]  # no agreement part
