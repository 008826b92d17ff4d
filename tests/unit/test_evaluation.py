"""training.evaluation: lock-step batching, zero-padded stacks, exact returns, epsilon-greedy, torch, seeds, summary."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spirl.common.seeding import derive_seed
from spirl.params import AtariParams
from spirl.training.evaluation import EvalResult, eval_seeds, evaluate, make_eval_envs, summarize
from spirl.training.representation import Representation, StatelessRepresentation

PAPER_ATARI = AtariParams(frame_size_px=96, frame_skip=4, frame_stack=4, max_noops=30,
                          max_episode_agent_steps=27_000, fire_on_reset=True)


class CounterEnv:
    """Deterministic fake env: frame pixels = pixel(t, id); reward (id + 1) for the target action.

    The target action at step t is (id + t) % n_actions, so the greedy policy `greedy_act` earns (id + 1) per
    step and an episode of `length` steps returns (id + 1) * length. Truncated at `cap` steps if given.
    """

    def __init__(self, env_id: int, length: int, n_actions: int, cap: int | None = None):
        self.env_id, self.length, self.n_actions, self.cap = env_id, length, n_actions, cap
        self.t = 0
        self.active = False
        self.actions: list[int] = []

    @property
    def frame(self) -> np.ndarray:
        """[2, 2, 3] uint8 frame, every pixel pixel(t, id)."""
        return np.broadcast_to(np.array(pixel(self.t, self.env_id), np.uint8), (2, 2, 3)).copy()

    def reset(self) -> tuple[None, dict]:
        self.t, self.active, self.actions = 0, True, []
        return None, {}

    def step(self, action: int) -> tuple[None, float, bool, bool, dict]:
        assert self.active, "step after the episode ended"
        assert isinstance(action, int) and 0 <= action < self.n_actions
        reward = float(self.env_id + 1) if action == (self.env_id + self.t) % self.n_actions else 0.0
        self.actions.append(action)
        self.t += 1
        terminated = self.t >= self.length
        truncated = self.cap is not None and self.t >= self.cap and not terminated
        self.active = not (terminated or truncated)
        return None, reward, terminated, truncated, {}


def pixel(t: int, env_id: int) -> list[int]:
    """Pixel of step t of env `env_id`: (t % 256, id, t // 256 + 1); the last channel is never 0."""
    return [t % 256, env_id, t // 256 + 1]


def decode(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert `pixel` on [B, 3] values: (t [B], id [B]) as int64."""
    pixels = np.asarray(pixels).astype(np.int64)
    return pixels[:, 0] + 256 * (pixels[:, 2] - 1), pixels[:, 1]


def make_counter_envs(lengths: list[int], n_actions: int) -> list[CounterEnv]:
    """One CounterEnv per length, ids 0..n-1."""
    return [CounterEnv(i, length, n_actions) for i, length in enumerate(lengths)]


def represent_np(rep_shape: tuple[int, ...]) -> StatelessRepresentation:
    """A `represent` giving float32 [B, *rep_shape, 3] = each frame's pixel, broadcast."""
    def represent(frames: np.ndarray) -> np.ndarray:
        pixel = frames[:, 0, 0, :].astype(np.float32)
        return np.broadcast_to(pixel.reshape(-1, *([1] * len(rep_shape)), 3),
                               (len(frames), *rep_shape, 3)).copy()
    return StatelessRepresentation(represent)


def greedy_act(stacks, n_actions: int) -> np.ndarray:
    """Greedy action (id + t) % n_actions from the newest representation of each stack."""
    t, env_id = decode(np.asarray(stacks[:, -1]).reshape(stacks.shape[0], -1, 3)[:, 0])
    return (t + env_id) % n_actions


def expected_stack(t: int, env_id: int, stack: int, rep_shape: tuple[int, ...]) -> np.ndarray:
    """[stack, *rep_shape, 3]: pixel(s, id) for s = t - stack + 1..t, oldest first, zeros for s < 0."""
    rows = [np.array(pixel(s, env_id), float) if s >= 0 else np.zeros(3) for s in range(t - stack + 1, t + 1)]
    return np.stack([np.broadcast_to(r, (*rep_shape, 3)) for r in rows])


class Spy:
    """Wraps represent/act, recording every call and checking each stack against the env frames."""

    def __init__(self, represent, n_actions: int, stack: int, rep_shape: tuple[int, ...]):
        self._represent, self.n_actions, self.stack, self.rep_shape = represent, n_actions, stack, rep_shape
        self.frame_batches: list[np.ndarray] = []
        self.stack_batches: list = []

    def represent(self, frames: np.ndarray):
        assert frames.dtype == np.uint8 and frames.shape[1:] == (2, 2, 3)
        self.frame_batches.append(frames.copy())
        return self._represent(frames)

    def act(self, stacks) -> np.ndarray:
        frames = self.frame_batches[-1]
        assert len(self.frame_batches) == len(self.stack_batches) + 1, "one act per represent"
        assert tuple(stacks.shape) == (len(frames), self.stack, *self.rep_shape, 3)
        for b, (t, env_id) in enumerate(zip(*decode(frames[:, 0, 0, :]), strict=True)):
            want = expected_stack(t, env_id, self.stack, self.rep_shape)
            np.testing.assert_array_equal(np.asarray(stacks[b]), want)
        self.stack_batches.append(stacks)
        return greedy_act(stacks, self.n_actions)


@pytest.mark.parametrize("stack", [1, 4])
@pytest.mark.parametrize("rep_shape", [(), (2,), (3, 2)])
def test_lock_step_batches_stacks_and_greedy_returns(stack, rep_shape):
    lengths, n_actions = [3, 7, 5, 1], 4
    envs = make_counter_envs(lengths, n_actions)
    spy = Spy(represent_np(rep_shape), n_actions, stack, rep_shape)
    ticks: list[int] = []
    result = evaluate(envs, StatelessRepresentation(spy.represent), spy.act, stack=stack, epsilon=0.0,
                      rng=np.random.default_rng(0), on_step=ticks.append)
    assert isinstance(result, EvalResult)
    assert result.returns == [3.0, 14.0, 15.0, 4.0]  # (id + 1) * length
    assert all(isinstance(r, float) for r in result.returns)
    assert result.lengths == lengths and result.finished == [True] * 4
    assert result.steps == 7 and ticks == list(range(1, 8)) and result.seconds >= 0
    # One represent and one act per iteration, with exactly the running envs, in env order.
    assert len(spy.frame_batches) == len(spy.stack_batches) == 7
    want_ids = [[i for i, n in enumerate(lengths) if n > k] for k in range(7)]
    assert [b[:, 0, 0, 1].tolist() for b in spy.frame_batches] == want_ids
    assert [b[:, 0, 0, 0].tolist() for b in spy.frame_batches] == [[k] * len(ids) for k, ids in enumerate(want_ids)]
    assert [len(s) for s in spy.stack_batches] == [4, 3, 3, 2, 2, 1, 1]


def test_stacks_are_fresh_and_in_the_representation_dtype():
    envs = make_counter_envs([4, 2], 3)
    seen = []

    def represent(frames):
        return frames[:, 0, 0, :].astype(np.float16)

    def act(stacks):
        seen.append(stacks)
        return greedy_act(stacks, 3)

    evaluate(envs, StatelessRepresentation(represent), act, stack=4, epsilon=0.0, rng=np.random.default_rng(0))
    assert all(s.dtype == np.float16 for s in seen)
    # Arrays handed to act earlier are not overwritten later.
    np.testing.assert_array_equal(seen[0], [[[0, 0, 0]] * 3 + [[0, 0, 1]], [[0, 0, 0]] * 3 + [[0, 1, 1]]])
    np.testing.assert_array_equal(seen[3][0], [[0, 0, 1], [1, 0, 1], [2, 0, 1], [3, 0, 1]])


def test_truncation_ends_the_episode():
    envs = [CounterEnv(0, 10, 2, cap=4), CounterEnv(1, 3, 2, cap=4)]
    result = evaluate(envs, represent_np(()), lambda s: greedy_act(s, 2), stack=4, epsilon=0.0,
                      rng=np.random.default_rng(0))
    assert result.lengths == [4, 3] and result.finished == [True, True]
    assert result.returns == [4.0, 6.0] and result.steps == 4


def test_max_steps_marks_unfinished_envs():
    lengths = [3, 7, 5, 1]
    envs = make_counter_envs(lengths, 4)
    result = evaluate(envs, represent_np(()), lambda s: greedy_act(s, 4), stack=4, epsilon=0.0,
                      rng=np.random.default_rng(0), max_steps=4)
    assert result.steps == 4
    assert result.finished == [True, False, False, True]
    assert result.lengths == [3, 4, 4, 1]
    assert result.returns == [3.0, 8.0, 12.0, 4.0]


def test_max_steps_zero_plays_nothing():
    calls = []
    result = evaluate(make_counter_envs([2, 3], 2), StatelessRepresentation(lambda f: calls.append(f) or f),
                      lambda s: calls.append(s), stack=4, epsilon=0.0, rng=np.random.default_rng(0), max_steps=0)
    assert calls == [] and result.steps == 0
    assert result.returns == [0.0, 0.0] and result.lengths == [0, 0] and result.finished == [False, False]


def run_single(length: int, n_actions: int, epsilon: float, seed: int) -> tuple[EvalResult, list[int]]:
    """Evaluate one CounterEnv of `length` steps; returns the result and the actions taken."""
    env = CounterEnv(0, length, n_actions)
    result = evaluate([env], represent_np(()), lambda s: greedy_act(s, n_actions), stack=4, epsilon=epsilon,
                      rng=np.random.default_rng(seed))
    return result, env.actions


def test_epsilon_one_is_uniform_random_and_reproducible():
    length, n_actions = 6000, 6
    result, actions = run_single(length, n_actions, 1.0, seed=11)
    counts = np.bincount(actions, minlength=n_actions)
    assert counts.sum() == length and np.all(np.abs(counts - length / n_actions) < 120)  # > 4 sigma
    # Exactly the documented draws: per step rng.random(1), then rng.integers(n_actions, size=1).
    rng = np.random.default_rng(11)
    want = []
    for _ in range(length):
        rng.random(1)
        want.append(int(rng.integers(n_actions, size=1)[0]))
    assert actions == want
    # Return = number of steps where the random action hit the target (reward 1 each).
    hits = sum(a == t % n_actions for t, a in enumerate(actions))
    assert result.returns == [float(hits)] and result.lengths == [length]
    again, actions_again = run_single(length, n_actions, 1.0, seed=11)
    assert actions_again == actions and again.returns == result.returns
    _, other = run_single(length, n_actions, 1.0, seed=12)
    assert other != actions


def test_epsilon_zero_is_greedy_and_small_epsilon_explores_at_its_rate():
    result, actions = run_single(5000, 5, 0.0, seed=3)
    assert result.returns == [5000.0] and actions == [t % 5 for t in range(5000)]
    result, actions = run_single(5000, 5, 0.3, seed=3)
    off_greedy = np.mean([a != t % 5 for t, a in enumerate(actions)])
    assert abs(off_greedy - 0.3 * 4 / 5) < 0.03  # 5 sigma
    assert result.returns == [5000.0 - off_greedy * 5000]


def test_torch_representations_give_torch_stacks_and_the_same_result():
    lengths, n_actions, stack = [6, 2, 9], 3, 4

    def represent(frames):
        return torch.from_numpy(frames[:, 0, 0, :].astype(np.float64)).unsqueeze(1).expand(-1, 2, -1).clone()

    spy_t = Spy(represent, n_actions, stack, (2,))  # checks every stack's values against the frames

    def act(stacks):
        assert isinstance(stacks, torch.Tensor) and stacks.dtype == torch.float64
        return torch.from_numpy(spy_t.act(stacks))  # torch actions are accepted too

    torch_result = evaluate(make_counter_envs(lengths, n_actions), StatelessRepresentation(spy_t.represent), act,
                            stack=stack, epsilon=0.4, rng=np.random.default_rng(5))
    spy = Spy(represent_np((2,)), n_actions, stack, (2,))
    np_result = evaluate(make_counter_envs(lengths, n_actions), StatelessRepresentation(spy.represent), spy.act,
                         stack=stack, epsilon=0.4, rng=np.random.default_rng(5))
    assert len(spy_t.stack_batches) == 9 and [len(s) for s in spy_t.stack_batches] == [3, 3, 2, 2, 2, 2, 1, 1, 1]
    assert torch_result.returns == np_result.returns and torch_result.lengths == lengths
    for ts, ns in zip(spy_t.stack_batches, spy.stack_batches, strict=True):
        np.testing.assert_array_equal(ts.numpy(), ns)


def test_eval_seeds_are_distinct_and_stable():
    seeds = eval_seeds(7, 50)
    assert len(set(seeds)) == 50 and all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert seeds == eval_seeds(7, 50) == [derive_seed(7, "eval", i) for i in range(50)]
    assert eval_seeds(7, 5) == seeds[:5]
    assert set(eval_seeds(8, 50)).isdisjoint(seeds)
    with pytest.raises(ValueError):
        eval_seeds(7, 0)


def test_summarize_hand_case():
    stats = summarize([1.0, 2.0, 3.0, 10.0])
    assert stats == {"mean": 4.0, "median": 2.5, "std": pytest.approx(12.5 ** 0.5, abs=1e-12),
                     "min": 1.0, "max": 10.0, "n": 4}
    assert summarize([5]) == {"mean": 5.0, "median": 5.0, "std": 0.0, "min": 5.0, "max": 5.0, "n": 1}
    with pytest.raises(ValueError):
        summarize([])


def test_invalid_arguments_and_outputs_raise():
    rng = np.random.default_rng(0)
    rep, act = represent_np(()), (lambda s: greedy_act(s, 2))
    with pytest.raises(ValueError, match="epsilon"):
        evaluate(make_counter_envs([2], 2), rep, act, stack=4, epsilon=1.5, rng=rng)
    with pytest.raises(ValueError, match="stack"):
        evaluate(make_counter_envs([2], 2), rep, act, stack=0, epsilon=0.0, rng=rng)
    with pytest.raises(ValueError, match="same number of actions"):
        evaluate([CounterEnv(0, 2, 2), CounterEnv(1, 2, 3)], rep, act, stack=4, epsilon=0.0, rng=rng)
    with pytest.raises(ValueError, match="at least one env"):
        evaluate([], rep, act, stack=4, epsilon=0.0, rng=rng)
    with pytest.raises(ValueError, match="represent returned"):
        evaluate(make_counter_envs([2, 2], 2), StatelessRepresentation(lambda f: rep(f)[:1]), act, stack=4,
                 epsilon=0.0, rng=rng)
    with pytest.raises(TypeError, match="represent must return"):
        evaluate(make_counter_envs([2], 2), StatelessRepresentation(lambda f: f.tolist()), act, stack=4, epsilon=0.0,
                 rng=rng)
    with pytest.raises(TypeError, match="wrap a function of the frames alone in StatelessRepresentation"):
        evaluate(make_counter_envs([2], 2), rep.fn, act, stack=4, epsilon=0.0, rng=rng)  # a bare function
    with pytest.raises(ValueError, match="act must return"):
        evaluate(make_counter_envs([2, 2], 2), rep, lambda s: np.zeros((1,), np.int64), stack=4, epsilon=0.0,
                 rng=rng)
    with pytest.raises(ValueError, match="outside"):
        evaluate(make_counter_envs([2], 2), rep, lambda s: np.full(len(s), 2), stack=4, epsilon=0.0, rng=rng)


def pool_12x12(frames: np.ndarray) -> np.ndarray:
    """Cheap representation: 8x8-pixel, channel-mean pooling of 96x96 frames, [B, 12, 12] float32."""
    return frames.reshape(len(frames), 12, 8, 12, 8, 3).mean(axis=(2, 4, 5), dtype=np.float32)


def test_real_atari_eval_envs_integration():
    envs = make_eval_envs("Frostbite", 0, 2, PAPER_ATARI)
    assert all(env.mode == "eval" for env in envs)
    stacks_seen = []

    def act(stacks):
        stacks_seen.append(stacks)
        return np.zeros(len(stacks), np.int64)  # NOOP

    result = evaluate(envs, StatelessRepresentation(pool_12x12), act, stack=4, epsilon=0.0,
                      rng=np.random.default_rng(0), max_steps=50)
    assert result.steps == 50 and result.lengths == [50, 50] and result.finished == [False, False]
    assert [tuple(s.shape) for s in stacks_seen] == [(2, 4, 12, 12)] * 50
    # Reference: the same seeds, reset and stepped by hand.
    refs = make_eval_envs("Frostbite", 0, 2, PAPER_ATARI)
    for ref in refs:
        ref.reset()
    first = pool_12x12(np.stack([ref.frame for ref in refs]))
    np.testing.assert_array_equal(stacks_seen[0][:, :3], 0)
    np.testing.assert_array_equal(stacks_seen[0][:, 3], first)
    want_returns = [sum(ref.step(0)[1] for _ in range(49)) for ref in refs]
    np.testing.assert_array_equal(stacks_seen[-1][:, 3], pool_12x12(np.stack([ref.frame for ref in refs])))
    want_returns = [r + ref.step(0)[1] for r, ref in zip(want_returns, refs, strict=True)]
    assert result.returns == want_returns
    for env, ref in zip(envs, refs, strict=True):
        np.testing.assert_array_equal(env.frame, ref.frame)


class DiffMemory:
    """A `represent` with memory per stream, as frame_diff's: each pooled frame minus its stream's previous one."""

    def __init__(self) -> None:
        self.last: dict = {}

    def __call__(self, frames, streams, starts):
        pooled = pool_12x12(frames)
        rows = []
        for b, stream in enumerate(streams):
            previous = pooled[b] if starts[b] or stream not in self.last else self.last[stream]
            rows.append(pooled[b] - previous)
            self.last[stream] = pooled[b]
        return np.stack(rows)

    def state(self, stream):
        last = self.last.get(stream)
        return None if last is None else last.copy()

    def restore(self, stream, state) -> None:
        if state is None:
            self.last.pop(stream, None)
        else:
            self.last[stream] = np.array(state)

    def forget(self, streams) -> None:
        for stream in streams:
            self.last.pop(stream, None)


def diff_act(stacks) -> np.ndarray:
    """A 'policy' that depends on every value of every stack (so a wrong memory or stack changes the actions)."""
    flat = np.abs(np.asarray(stacks, dtype=np.float64)).reshape(len(stacks), -1).sum(axis=1)
    return (np.floor(flat * 7.0) % 4).astype(np.int64)  # Breakout's 4 actions


def _round_trip(snapshot: dict) -> dict:
    """A snapshot as a checkpoint gives it back (torch.save / torch.load)."""
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_an_interrupted_evaluation_resumes_to_the_uninterrupted_result():
    """Real Atari eval envs, epsilon 0.5 and a scorer memory per env: resuming from any snapshot (one taken before
    any episode ended, one after some had) on fresh envs, a fresh memory and a Generator of another seed gives
    the returns, lengths and step count of one straight evaluation."""
    envs_of = lambda: make_eval_envs("Breakout", 3, 4, PAPER_ATARI)  # noqa: E731
    streams = [("eval", i) for i in range(4)]
    straight = evaluate(envs_of(), DiffMemory(), diff_act, 4, 0.5, np.random.default_rng(7), streams=streams)
    assert all(straight.finished) and len(set(straight.lengths)) > 1  # envs end at different steps
    snapshots = []
    saved = evaluate(envs_of(), DiffMemory(), diff_act, 4, 0.5, np.random.default_rng(7), streams=streams,
                     save=lambda s: snapshots.append(_round_trip(s)), save_every_s=0.0)
    assert (saved.returns, saved.lengths, saved.steps) == (straight.returns, straight.lengths, straight.steps)
    assert [s["steps"] for s in snapshots] == list(range(1, len(snapshots) + 1))  # every iteration, while any runs
    assert len(snapshots) == straight.steps - 1
    early = snapshots[9]
    late = next(s for s in snapshots if 0 < s["finished"].sum() < 4)
    assert early["finished"].sum() == 0 and len(late["running"]) == len(late["envs"]) == len(late["memory"]) < 4
    for snapshot in (early, late):
        resumed = evaluate(envs_of(), DiffMemory(), diff_act, 4, 0.5, np.random.default_rng(99), streams=streams,
                           resume=snapshot)
        assert resumed.returns == straight.returns and resumed.lengths == straight.lengths
        assert resumed.finished == straight.finished and resumed.steps == straight.steps
        assert resumed.seconds >= snapshot["seconds"] > 0
    # without the scorer's memory the evaluation would go on differently: refused, not silently wrong
    with pytest.raises(ValueError, match="memory"):
        evaluate(envs_of(), StatelessRepresentation(pool_12x12), diff_act, 4, 0.5, np.random.default_rng(7),
                 resume=late)
    with pytest.raises(ValueError, match="cannot restore the memory"):  # streams, but a representation keeping none
        evaluate(envs_of(), StatelessRepresentation(pool_12x12), diff_act, 4, 0.5, np.random.default_rng(7),
                 streams=streams, resume=late)
    with pytest.raises(ValueError, match="of 4 envs, this evaluation has 3"):
        evaluate(envs_of()[:3], DiffMemory(), diff_act, 4, 0.5, np.random.default_rng(7), streams=streams[:3],
                 resume=late)
    with pytest.raises(ValueError, match="lacks rng"):
        evaluate(envs_of(), DiffMemory(), diff_act, 4, 0.5, np.random.default_rng(7), streams=streams,
                 resume={k: v for k, v in late.items() if k != "rng"})


def test_a_stateless_representation_is_a_representation_without_memory():
    """The adapter calls its function on the frames alone, saves no memory and refuses to continue one."""
    seen = []
    rep = StatelessRepresentation(lambda frames: seen.append(frames) or frames[:, 0, 0, :])
    assert isinstance(rep, Representation) and isinstance(DiffMemory(), Representation)
    assert not isinstance(pool_12x12, Representation)  # a bare function lacks state, restore and forget
    frames = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(rep(frames, ["a", "b"], [True, False]), frames[:, 0, 0, :])
    assert len(seen) == 1 and seen[0] is frames
    assert rep.state("a") is None
    rep.restore("a", None)
    rep.forget(["a", "b"])
    with pytest.raises(ValueError, match="cannot restore the memory of stream 'a'"):
        rep.restore("a", np.zeros(3))
