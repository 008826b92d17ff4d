"""MLR's predictive latent decoder (SPEC §15.5, §15.10, §15.11 test 2): sinusoid values, token layout, block maths
against a written-out reference, bidirectional attention, exact parameter counts, seeded init, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spirl.agents.mlr.decoder import LatentBlock, PredictiveLatentDecoder, sinusoid_table
from spirl.common.nn import parameter_count

B, T, D, A = 3, 5, 16, 6


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _decoder(seed: int = 0, d: int = D, n_actions: int = A) -> PredictiveLatentDecoder:
    return PredictiveLatentDecoder(d, n_actions, generator=_gen(seed))


def _inputs(seed: int = 1, t: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(B, t, D, generator=g), torch.randint(0, A, (B, t), generator=g)


# --- 1. sinusoid table ---------------------------------------------------------------------------------------------


def test_sinusoid_table_hand_values():
    pe = sinusoid_table(128, 8)
    assert pe.shape == (128, 8) and pe.dtype == torch.float32
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 4))  # sin 0 = 0 on even dims, cos 0 = 1 on odd dims
    # pos 1, i = 0: angle 1; pos 3, pair i = 1 (dims 2, 3): angle 3 / 10000^(2/8) = 0.3
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert pe[3, 2].item() == pytest.approx(math.sin(0.3), abs=1e-7)
    assert pe[3, 3].item() == pytest.approx(math.cos(0.3), abs=1e-7)
    # pos 100, pair i = 3 (dims 6, 7): angle 100 / 10000^(6/8) = 0.1
    assert pe[100, 6].item() == pytest.approx(math.sin(0.1), abs=1e-7)
    assert pe[100, 7].item() == pytest.approx(math.cos(0.1), abs=1e-7)


def test_sinusoid_table_model_width():
    pe = sinusoid_table(128, 3136)
    assert pe.shape == (128, 3136)
    # d = 3136, pos 17, dim 1001 (odd: cos, pair i = 500): angle 17 / 10000^(1000/3136)
    assert pe[17, 1001].item() == pytest.approx(math.cos(17 / 10000 ** (1000 / 3136)), abs=1e-6)
    assert pe[17, 1000].item() == pytest.approx(math.sin(17 / 10000 ** (1000 / 3136)), abs=1e-6)
    with pytest.raises(ValueError):
        sinusoid_table(0, 8)


def test_positions_are_a_fixed_buffer():
    dec = _decoder()
    assert "pos_embed" in dict(dec.named_buffers())
    assert all("pos" not in name for name, _ in dec.named_parameters())
    assert torch.equal(dec.pos_embed, sinusoid_table(128, D))


# --- 2. decoder input (SPEC §15.11 test 2) ------------------------------------------------------------------------


def test_tokens_layout_and_positions():
    dec = _decoder()
    states, actions = _inputs()
    tok = dec.tokens(states, actions)
    assert tok.shape == (B, 2 * T, D)
    pe = sinusoid_table(128, D)[:T]  # [T, D]
    w, b = dec.action_embed.weight, dec.action_embed.bias  # [D, A], [D]
    action_emb = w.T[actions] + b  # [B, T, D] = Linear(one_hot(a))
    torch.testing.assert_close(tok[:, :T] - pe, states, rtol=0, atol=1e-6)
    torch.testing.assert_close(tok[:, T:] - pe, action_emb, rtol=0, atol=1e-6)
    # the same row i on tokens i and T+i: a wrong row (e.g. T+i on the action half) would differ
    assert not torch.allclose(tok[:, T:] - sinusoid_table(128, D)[T : 2 * T], action_emb, atol=1e-3)


def test_action_embedding_is_linear_on_one_hot():
    dec = _decoder()
    _, actions = _inputs()
    expected = F.one_hot(actions, A).float() @ dec.action_embed.weight.T + dec.action_embed.bias
    torch.testing.assert_close(dec.embed_actions(actions), expected, rtol=0, atol=1e-6)
    assert dec.action_embed.bias is not None and dec.action_embed.weight.shape == (D, A)


@pytest.mark.parametrize(
    "states, actions",
    [
        (torch.zeros(B, T, D + 1), torch.zeros(B, T, dtype=torch.long)),  # wrong width
        (torch.zeros(B, T, D), torch.zeros(B, T + 1, dtype=torch.long)),  # T mismatch
        (torch.zeros(B, 129, D), torch.zeros(B, 129, dtype=torch.long)),  # T > max_len
        (torch.zeros(B, T, D), torch.zeros(B, T)),  # float actions
        (torch.zeros(B, T, D), torch.full((B, T), A, dtype=torch.long)),  # action out of range
        (torch.zeros(B, T, D), torch.full((B, T), -1, dtype=torch.long)),  # negative action
    ],
)
def test_input_validation(states, actions):
    with pytest.raises(ValueError):
        _decoder()(states, actions)


# --- 3. block vs a written-out reference -------------------------------------------------------------------------


def _reference_block(blk: LatentBlock, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LN, q k v, softmax(q kᵀ/√d) v, proj, residual, LN, fc1, GELU, fc2, residual, with plain matmuls."""
    d = x.shape[-1]

    def ln(z, w, b):
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return (z - mu) / torch.sqrt(var + eps) * w + b

    h = ln(x, blk.norm1.weight, blk.norm1.bias)
    wq, wk, wv = blk.qkv.weight[:d], blk.qkv.weight[d : 2 * d], blk.qkv.weight[2 * d :]
    q, k, v = h @ wq.T, h @ wk.T, h @ wv.T  # [B, L, d]
    logits = q @ k.transpose(1, 2) / math.sqrt(d)  # [B, L, L]
    att = torch.exp(logits - logits.amax(-1, keepdim=True))
    att = att / att.sum(-1, keepdim=True)
    x = x + (att @ v) @ blk.proj.weight.T + blk.proj.bias
    h = ln(x, blk.norm2.weight, blk.norm2.bias)
    u = h @ blk.fc1.weight.T + blk.fc1.bias
    u = 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))  # exact GELU
    return x + u @ blk.fc2.weight.T + blk.fc2.bias


def test_block_matches_reference():
    blk = _decoder(seed=3).blocks[0]
    with torch.no_grad():  # non-trivial LayerNorm affine, so a swapped or missing LN shows
        for norm in (blk.norm1, blk.norm2):
            norm.weight.uniform_(0.5, 1.5, generator=_gen(4))
            norm.bias.uniform_(-0.5, 0.5, generator=_gen(5))
    x = torch.randn(B, 2 * T, D, generator=_gen(6))
    out = blk(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _reference_block(blk, x), rtol=0, atol=1e-5)


def test_block_shapes_and_biases():
    blk = LatentBlock(D)
    assert blk.qkv.bias is None and blk.qkv.weight.shape == (3 * D, D)
    assert blk.proj.bias is not None and blk.fc1.bias is not None and blk.fc2.bias is not None
    assert blk.fc1.weight.shape == (2 * D, D) and blk.fc2.weight.shape == (D, 2 * D)
    assert blk.norm1.eps == blk.norm2.eps == 1e-5


# --- 4. bidirectional attention, output positions ------------------------------------------------------------------


def test_forward_is_blocks_on_tokens_sliced_to_state_positions():
    dec = _decoder()
    states, actions = _inputs()
    out = dec(states, actions)
    assert out.shape == (B, T, D)
    x = dec.tokens(states, actions)
    for blk in dec.blocks:
        x = _reference_block(blk, x)
    torch.testing.assert_close(out, x[:, :T], rtol=0, atol=1e-5)
    assert not torch.allclose(out, x[:, T:], atol=1e-3)


def test_last_action_reaches_first_position():
    dec = _decoder()
    states, actions = _inputs()
    changed = actions.clone()
    changed[:, -1] = (actions[:, -1] + 1) % A
    out, out_changed = dec(states, actions), dec(states, changed)
    assert (out[:, 0] - out_changed[:, 0]).abs().max() > 1e-4  # no causal mask
    # and the last state reaches position 0 too
    states2 = states.clone()
    states2[:, -1] += torch.randn(B, D, generator=_gen(9))  # not a constant shift: LN would cancel that
    assert (dec(states2, actions)[:, 0] - out[:, 0]).abs().max() > 1e-4


def test_variable_window_length():
    dec = _decoder()
    states, actions = _inputs(t=16)
    assert dec(states, actions).shape == (B, 16, D)


# --- 5. parameter counts (SPEC §15.10) -------------------------------------------------------------------------------

DECODER_COUNTS = {3136: 157_402_112, 1024: 16_793_600, 576: 5_317_632}
EMBED_COUNTS = {(3136, 18): 59_584, (1024, 18): 19_456, (576, 18): 10_944,
                (3136, 9): 31_360, (1024, 9): 10_240, (576, 9): 5_760}


@pytest.mark.parametrize("d, n_actions", sorted(EMBED_COUNTS))
def test_parameter_counts(d, n_actions):
    with torch.device("meta"):
        dec = PredictiveLatentDecoder(d, n_actions)
    assert parameter_count(dec.blocks) == DECODER_COUNTS[d]
    assert parameter_count(dec.blocks[0]) == 8 * d * d + 8 * d == DECODER_COUNTS[d] // 2
    assert parameter_count(dec.action_embed) == EMBED_COUNTS[(d, n_actions)] == d * (n_actions + 1)
    assert parameter_count(dec) == DECODER_COUNTS[d] + EMBED_COUNTS[(d, n_actions)]
    assert dec.pos_embed.shape == (128, d)


def test_no_final_layer_norm():
    dec = _decoder()
    norms = [m for m in dec.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * len(dec.blocks) == 4
    linears = [m for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 + 4 * len(dec.blocks)  # action embedding + qkv, proj, fc1, fc2 per block
    assert sum(m.bias is None for m in linears) == len(dec.blocks)  # only the qkv layers


# --- 6. determinism ---------------------------------------------------------------------------------------------------


def test_seeded_init_is_deterministic_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b, c = _decoder(seed=7), _decoder(seed=7), _decoder(seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.qkv.weight"], sc["blocks.0.qkv.weight"])
    # PyTorch default init: U(±1/√fan_in) for weights and biases, LayerNorm (1, 0)
    w = a.blocks[1].fc2.weight
    assert w.abs().max() <= 1 / math.sqrt(2 * D) and w.abs().max() > 0.9 / math.sqrt(2 * D)
    assert torch.equal(a.blocks[0].norm1.weight, torch.ones(D)) and torch.equal(a.blocks[0].norm1.bias, torch.zeros(D))


# --- 7. gradients ---------------------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter():
    dec = _decoder()
    states, actions = _inputs()
    states.requires_grad_(True)
    dec(states, actions).pow(2).sum().backward()
    assert states.grad is not None and states.grad.abs().sum() > 0
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    used = torch.unique(actions)
    assert dec.action_embed.weight.grad[:, used].abs().sum(0).min() > 0
