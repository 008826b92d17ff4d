"""bench/learner.py's operation count: hand-worked products, and DE-Rainbow's update counted layer by layer."""

from __future__ import annotations

import torch

from spirl.params import REPO_ROOT, load_params


def test_flops_of_a_linear_layer_forward_and_backward(load_bench):
    bench = load_bench("learner")
    layer = torch.nn.Linear(3, 2)
    x = torch.ones(4, 3)
    assert bench.flops_of(lambda: layer(x))["gflop"] * 1e9 == 2 * 4 * 3 * 2
    # backward: the weight's gradient only (x needs none), one more [2, 4] x [4, 3] product
    assert bench.flops_of(lambda: layer(x).sum().backward())["gflop"] * 1e9 == 2 * (2 * 4 * 3 * 2)


def test_de_rainbow_update_is_three_forward_passes_and_one_backward(load_bench):
    bench = load_bench("learner")
    params = load_params([REPO_ROOT / "params.yaml"])
    counts = bench.VariantBench(params, "de_rainbow", "Seaquest", torch.device("cpu"), 0.1).flops()["update"]
    batch = params.train.batch_size
    conv1 = 2 * 18 * 18 * 32 * (4 * 5 * 5)  # per frame stack: 84 + 2*3 padding -> 18x18 outputs, 32 filters of 4x5x5
    conv2 = 2 * 4 * 4 * 64 * (32 * 5 * 5)  # 18 + 2*1 -> 4x4 outputs, 64 filters of 32x5x5
    by_op = {op: round(g * 1e9) for op, g in counts["gflop_by_op"].items()}
    # online(s), online(s') for the double-DQN argmax, target(s'): three forward passes of the batch
    assert by_op["aten.convolution"] == 3 * batch * (conv1 + conv2)
    # backward through online(s): conv2's weight and input gradients, conv1's weight gradient (frames need none)
    assert by_op["aten.convolution_backward"] == batch * (conv1 + 2 * conv2)
