"""MLR's encoder, projection g, predictor q, target branch, loss and clipping groups (SPEC §15.4, §15.6-15.8,
§15.10)."""

from __future__ import annotations

import math

import pytest
import torch

from spirl.agents.mlr.loss import NORMALIZE_EPS, Predictor, TargetBranch, clip_groups, mlr_loss, projection
from spirl.agents.networks import PixelEncoder, minmax_renorm
from spirl.agents.rainbow import DuelingC51Head
from spirl.common.nn import parameter_count

ADVANTAGE_BIAS = 51  # SPR's head has a 51-atom advantage bias added to every action: it cancels in A − mean_a A


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def nature_cnn(generator=None) -> PixelEncoder:
    return PixelEncoder(4, [32, 64, 64], [8, 4, 3], [4, 2, 1], [0, 0, 0], 84, generator=generator)


# ----------------------------------------------------------------------------- encoders and parameter counts (§15.10)


def test_nature_cnn_shape_and_parameters():
    cnn = nature_cnn(_gen(0))
    assert cnn.output_shape == (64, 7, 7) and cnn.output_size == 3136
    assert parameter_count(cnn) == 77_984  # 4·32·64+32 + 32·64·16+64 + 64·64·9+64
    assert cnn(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 3136)
    assert list(dict(cnn.named_children())) == ["conv1", "conv2", "conv3"]


@pytest.mark.parametrize(("paddings", "size"), [([3, 1], 1024), ([0, 0], 576)])
def test_der_cnn_latent_width(paddings, size):
    cnn = PixelEncoder(4, [32, 64], [5, 5], [5, 5], paddings, 84)
    assert cnn.output_size == size and parameter_count(cnn) == 54_496


@pytest.mark.parametrize(("d", "expected"), [(3136, 3_710_405), (1024, 1_547_717), (576, 1_088_965)])
def test_q_head_count_is_the_spec_table_less_the_cancelling_advantage_bias(d, expected):
    head = DuelingC51Head(d, 256, 18, 51, 0.1)
    assert parameter_count(head) == expected - ADVANTAGE_BIAS


def test_predictor_parameters():
    assert parameter_count(Predictor(512)) == 262_656


def test_encoder_layers_equal_an_explicit_reference():
    cnn = nature_cnn(_gen(1))
    x = torch.rand(3, 4, 84, 84, generator=_gen(2))
    h = x
    for conv in (cnn.conv1, cnn.conv2, cnn.conv3):
        h = torch.relu(torch.nn.functional.conv2d(h, conv.weight, conv.bias, conv.stride, conv.padding))
    torch.testing.assert_close(cnn(x), h.flatten(1))


def test_minmax_renorm_per_sample():
    h = torch.tensor([[[1.0, 3.0], [5.0, 2.0]], [[-2.0, -2.0], [0.0, 6.0]]])  # [2, 2, 2]
    out = minmax_renorm(h)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    torch.testing.assert_close(out[1], torch.tensor([[0.0, 0.0], [0.25, 1.0]]))
    torch.testing.assert_close(minmax_renorm(7 * h + 3), out)  # scale- and shift-invariant


# ----------------------------------------------------------------------------- g, q and the target branch (§15.6)


def test_projection_is_the_heads_first_layers_without_noise():
    head = DuelingC51Head(20, 8, 5, 11, 0.5, generator=_gen(3))
    x = torch.randn(6, 20, generator=_gen(4))
    out = projection(head, x)
    head.eval()  # eval mode: mean weights
    torch.testing.assert_close(out, torch.cat([head.value_hidden(x), head.advantage_hidden(x)], dim=1))
    head.train()
    head.reset_noise(_gen(5))
    torch.testing.assert_close(projection(head, x), out)  # the noise never enters g


def test_target_branch_is_a_frozen_copy_until_synced():
    cnn, head = nature_cnn(_gen(6)), DuelingC51Head(3136, 16, 4, 11, 0.1, generator=_gen(7))
    target = TargetBranch(cnn, head)
    assert not any(p.requires_grad for p in target.parameters())
    x = torch.rand(2, 4, 84, 84, generator=_gen(8))
    before = target.project(target.encoder(x))
    torch.testing.assert_close(before, projection(head, cnn(x)))
    with torch.no_grad():
        cnn.conv1.bias.add_(0.5)
        head.value_hidden.weight_mu.mul_(2.0)
    torch.testing.assert_close(target.project(target.encoder(x)), before)  # the copy does not follow
    target.sync(cnn, head)
    torch.testing.assert_close(target.project(target.encoder(x)), projection(head, cnn(x)))


# ----------------------------------------------------------------------------- the loss (§15.7)


def test_loss_hand_worked():
    # sample 0: steps parallel (cos 1 -> 0) and orthogonal (cos 0 -> 2); sample 1: opposite (4) and 60° (1)
    predicted = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[0.0, 3.0], [1.0, 0.0]]])
    target = torch.tensor([[[5.0, 0.0], [0.0, 1.0]], [[0.0, -1.0], [0.5, math.sqrt(3) / 2]]])
    weights = torch.tensor([1.0, 0.5])
    expected = (1.0 * (0 + 2) + 0.5 * (4 + 1)) / 4
    assert mlr_loss(predicted, target, weights).item() == pytest.approx(expected, abs=1e-6)
    alive = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # the orthogonal step zeroed, still counted in the mean
    assert mlr_loss(predicted, target, weights, alive).item() == pytest.approx(0.5 * 5 / 4, abs=1e-6)


def test_loss_is_two_minus_two_cos_on_random_vectors():
    a, b = torch.randn(4, 16, 512, generator=_gen(9)), torch.randn(4, 16, 512, generator=_gen(10))
    w = torch.rand(4, generator=_gen(11))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [4, 16]
    torch.testing.assert_close(mlr_loss(a, b, w), ((2 - 2 * cos) * w[:, None]).mean())
    assert mlr_loss(a, b, torch.ones(4)).item() == pytest.approx(2.0, abs=0.05)  # random directions: about 2


def test_loss_eps_floors_short_vectors():
    tiny = torch.full((1, 1, 4), 1e-5)
    out = mlr_loss(tiny, torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), torch.ones(1))
    normalised = tiny / NORMALIZE_EPS  # shorter than eps: divided by eps, not by its norm
    assert out.item() == pytest.approx(float((normalised - torch.tensor([1.0, 0, 0, 0])).pow(2).sum()), rel=1e-6)


def test_no_gradient_through_the_target_and_shape_errors():
    a = torch.randn(2, 3, 8, requires_grad=True)
    b = torch.randn(2, 3, 8, requires_grad=True)
    mlr_loss(a, b, torch.ones(2)).backward()
    assert a.grad is not None and b.grad is None
    with pytest.raises(ValueError, match="need predicted, target"):
        mlr_loss(a, b[:, :2], torch.ones(2))


# ----------------------------------------------------------------------------- clipping groups (§15.8)


def test_clip_groups_clip_each_group_separately_and_leave_the_rest():
    big, small, free = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    big.grad, small.grad = torch.tensor([30.0, 40.0, 0.0]), torch.tensor([3.0, 4.0, 0.0])
    free.grad = torch.full((3,), 99.0)
    norms = clip_groups({"encoder_and_head": [big], "transformer": [small]}, 10.0)
    assert norms == pytest.approx({"encoder_and_head": 50.0, "transformer": 5.0})
    torch.testing.assert_close(big.grad, torch.tensor([6.0, 8.0, 0.0]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small.grad, torch.tensor([3.0, 4.0, 0.0]))  # under the bound: unchanged
    torch.testing.assert_close(free.grad, torch.full((3,), 99.0))  # in no group: never clipped
