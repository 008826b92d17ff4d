"""A trained agent as a function of raw stacks (spirl.agents.probe, SPEC §16): the representation of every frame equals
one env's stream through the stack, stacks sharing a prefix never see each other's newest frame, and Q is the
network's expected Q with the noise off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spirl.agents.agent import build_qnetwork
from spirl.agents.probe import StackQ
from spirl.agents.rainbow import expected_q, support
from spirl.agents.represent import representation_for_run
from spirl.envs.preprocess import to_gray84
from spirl.params import REPO_ROOT, load_params, resolve_variant
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.pretrain import mae_config

SIZE = 32


def _moving(n: int, seed: int = 0, x0: int = 2) -> np.ndarray:
    """n frames of a bright 4x4 sprite moving right 3 px a frame over a random dark background."""
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)[None], n, axis=0)
    for t in range(n):
        frames[t, 12:16, x0 + 3 * t:x0 + 4 + 3 * t] = 255
    return frames


def _probe(variant: str):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    base = params.experiment.variants[variant].base
    mae = MaskedAutoencoder(mae_config(params.mae, SIZE), generator=torch.Generator().manual_seed(0)).eval()
    run = representation_for_run(params, base, "Frostbite", mae if base == "spirl" else None,
                              {"result": {"mr_star": 0.5}})
    net = build_qnetwork(run.spec, params.agent, 5, 4, torch.Generator().manual_seed(1))
    z = support(params.agent.v_min, params.agent.v_max, params.agent.atoms)
    return StackQ(net, run.represent, z), run, net, z


def _naive(run, stack: np.ndarray) -> np.ndarray:
    """One env's stream through the stack: padding frames zero, the real frames represented in order."""
    out = np.zeros((len(stack), *run.spec.shape), run.spec.dtype)
    real = [k for k in range(len(stack)) if stack[k].any()]
    for k in range(real[0], len(stack)):
        out[k] = run.represent(stack[k:k + 1], ["naive"], [k == real[0]])[0]
    run.represent.forget(["naive"])
    return out


@pytest.mark.parametrize("variant", ["spirl_framediff", "spirl", "mae_all"])
def test_each_stack_is_represented_as_one_stream(variant):
    probe, run, net, z = _probe(variant)
    frames = _moving(6)
    prefix = frames[:3]
    stacks = np.stack([np.concatenate([prefix, frames[3:4]]), np.concatenate([prefix, frames[5:6]]),
                       np.concatenate([np.zeros_like(prefix[:2]), frames[:2]])])  # the last: an episode's start
    reps = probe.representations(stacks)
    for i, stack in enumerate(stacks):
        np.testing.assert_array_equal(reps[i], _naive(run, stack))
    assert not reps[2, :2].any()  # padding frames stay zero
    q = probe(stacks)
    net.eval()
    with torch.no_grad():
        expected = expected_q(net(torch.as_tensor(reps)), z).double().numpy()
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    assert q.shape == (3, 5)


def test_frame_diff_selection_follows_the_newest_frame_of_its_own_stack():
    probe, run, _, _ = _probe("spirl_framediff")
    frames = _moving(6)
    stack = frames[:4]
    selected = probe.selected_patches(stack)
    run.represent.forget(["naive"])
    for k in range(3):
        run.represent(stack[k:k + 1], ["naive"], [k == 0])
    indices, counts = run.represent.select(stack[3:4], ["naive"], [False])
    np.testing.assert_array_equal(selected, indices[0, : int(counts[0])].numpy())
    # the sprite at x 11..14 moved from 8..11: patches (8 px) in row 1 (y 12..15), columns 1 lead the differences
    assert 4 * 1 + 1 in selected.tolist()


def test_pixel_agent_reads_gray_frames():
    probe, _, _, _ = _probe("de_rainbow")
    stacks = np.stack([_moving(4, seed=2)])
    reps = probe.representations(stacks)
    np.testing.assert_array_equal(reps[0], to_gray84(stacks[0]))
    with pytest.raises(ValueError, match="uint8"):
        probe.representations(stacks.astype(np.float32))
    with pytest.raises(ValueError, match="selects no patches"):
        probe.selected_patches(stacks[0])
