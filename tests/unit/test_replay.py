"""Prioritised replay (SPEC §8): sum tree, PER frequencies and IS weights, frame stacks, n-step targets, validity."""

from __future__ import annotations

import numpy as np
import pytest

from spirl.agents.replay import IS_WEIGHT_EPS, PRIORITY_EPS, PrioritizedReplay, importance_weights
from spirl.agents.sumtree import SumTree

# Chi-square critical values at p = 0.001 (upper tail), by degrees of freedom.
CHI2_CRIT_001 = {36: 67.985}


def _buffer(capacity, stack, n_step, gamma=0.5, alpha=0.5, new_priority="one", seed=0, shape=(6, 6), dtype=np.uint8,
            is_weight_norm="batch", exclude_newest=0):
    """A PrioritizedReplay with a seeded generator; frames [6, 6] uint8 unless told."""
    return PrioritizedReplay(
        capacity, shape, dtype, stack, n_step, gamma, alpha, new_priority, is_weight_norm, np.random.default_rng(seed),
        exclude_newest=exclude_newest,
    )


def _frame(t, shape, dtype):
    """Frame of time t: every value t + 1 (0 is the padding; uint8 wraps at 250, far beyond any stack)."""
    value = t % 250 + 1 if dtype == np.uint8 else t + 1
    return np.full(shape, value, dtype)


def _fill(buf, history, terminal_times, n_rows, shape=(6, 6), dtype=np.uint8):
    """Append n_rows steps (reward r_t = t + 1, action t % 7), recording (reward, terminal) in `history`."""
    for _ in range(n_rows):
        t = len(history)
        terminal = t in terminal_times
        buf.append(_frame(t, shape, dtype), t % 7, float(t + 1), terminal)
        history.append((float(t + 1), terminal))


def _times(buf, slots):
    """Global times of the rows in `slots`, from the rows appended (test-side bookkeeping)."""
    count = buf.state_dict()["count"].item()
    return count - 1 - (count - 1 - np.asarray(slots)) % buf.capacity


def _ref_valid(history, capacity, stack, n_step, exclude_newest=0):
    """Naive validity of every stored time: {t} with rows t-stack+1..t+n (cut after a terminal) stored, not among the
    newest `exclude_newest` rows."""
    count = len(history)
    oldest = count - min(count, capacity)
    terms = [term for _, term in history]
    valid = set()
    for t in range(oldest, count - exclude_newest):
        past = t - stack + 1 >= oldest or oldest == 0
        future = t + n_step <= count - 1 or any(terms[t : min(t + n_step, count)])
        if past and future:
            valid.add(t)
    return valid


def _ref_stack(history, t, stack, shape, dtype):
    """Naive stack at t: frames t-stack+1..t, zero for times < 0 or before the last terminal ahead of t."""
    frames = []
    for k in range(t - stack + 1, t + 1):
        earlier = k < 0 or any(history[j][1] for j in range(k, t))
        frames.append(np.zeros(shape, dtype) if earlier else _frame(k, shape, dtype))
    return np.stack(frames)


def _ref_n_step(history, t, n_step, gamma):
    """Naive (return, discount): rewards t..t+n-1 stopping after the first terminal; gamma^n or 0."""
    ret = 0.0
    for k in range(n_step):
        reward, terminal = history[t + k]
        ret += gamma**k * reward
        if terminal:
            return ret, 0.0
    return ret, gamma**n_step


def _check_batch(buf, history, batch, stack, n_step, gamma, shape, dtype):
    """Assert every sampled row is valid and its stacks and n-step targets equal the naive reference."""
    times = _times(buf, batch["indices"])
    assert set(times.tolist()) <= _ref_valid(history, buf.capacity, stack, n_step)
    for b, t in enumerate(times.tolist()):
        np.testing.assert_array_equal(batch["obs"][b], _ref_stack(history, t, stack, shape, dtype))
        ret, disc = _ref_n_step(history, t, n_step, gamma)
        assert batch["returns"][b] == pytest.approx(ret, rel=1e-6)
        assert batch["discounts"][b] == pytest.approx(disc, rel=1e-6)
        assert batch["actions"][b] == t % 7
        if disc > 0:
            np.testing.assert_array_equal(batch["next_obs"][b], _ref_stack(history, t + n_step, stack, shape, dtype))
        else:
            assert not batch["next_obs"][b].any()
    return set(times.tolist())


# ----------------------------------------------------------------------------- sum tree


def test_sum_tree_total_equals_sum():
    rng = np.random.default_rng(1)
    tree = SumTree(37)  # not a power of two
    values = rng.random(37)
    tree.update(np.arange(37), values)
    assert tree.total() == pytest.approx(values.sum(), rel=1e-12)
    values[[3, 20, 36]] = [0.0, 5.0, 0.25]
    tree.update(np.array([3, 20, 36]), values[[3, 20, 36]])
    assert tree.total() == pytest.approx(values.sum(), rel=1e-12)
    np.testing.assert_array_equal(tree.get(np.arange(37)), values)
    assert tree.max_priority == 5.0
    assert tree.min_positive == values[values > 0].min()


def test_sum_tree_find_boundaries():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 2.0, 0.0, 3.0, 0.5]))  # leaf i covers [S_i, S_i+1): 0,1,3,3,6,6.5
    values = np.array([0.0, 0.5, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 6.4, 6.5, 7.0, -1.0])
    expected = [0, 0, 0, 1, 1, 3, 3, 4, 4, 4, 4, 0]  # 3.0 skips the empty leaf 2; >= total -> last positive
    np.testing.assert_array_equal(tree.find(values), expected)
    np.testing.assert_array_equal(tree.find(values.reshape(3, 4)), np.reshape(expected, (3, 4)))
    tail = SumTree(3)
    tail.update(np.arange(3), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(tail.find(np.array([0.0, 1.0, 2.0])), [0, 0, 0])  # never a zero leaf
    with pytest.raises(ValueError):
        SumTree(4).find(np.array([0.0]))


def test_sum_tree_vectorised_update_equals_one_by_one():
    rng = np.random.default_rng(2)
    batched, single = SumTree(50), SumTree(50)
    for _ in range(20):
        idx = rng.integers(0, 50, 16)  # repeats: the last write wins
        val = rng.random(16) * (rng.random(16) > 0.2)
        batched.update(idx, val)
        for i, v in zip(idx, val, strict=True):
            single.update(np.array([i]), np.array([v]))
        for key, array in batched.state_dict().items():
            np.testing.assert_array_equal(array, single.state_dict()[key])


# ----------------------------------------------------------------------------- PER sampling and weights


def test_sampling_frequencies_follow_priority_power_alpha():
    alpha, capacity, n_rows, stack, n_step = 0.5, 64, 40, 4, 3
    buf = _buffer(capacity, stack, n_step, alpha=alpha, seed=3)
    _fill(buf, [], set(), n_rows)
    valid = np.arange(n_rows - n_step)  # 37 rows: 0..36
    raw = valid + 1.0
    buf.update_priorities(valid, raw)
    counts = np.zeros(capacity)
    n_batches, batch = 4000, 32
    for _ in range(n_batches):
        np.add.at(counts, buf.sample(batch, 0.4)["indices"], 1)
    draws = n_batches * batch
    assert counts[n_rows - n_step :].sum() == 0

    def chi2(power):
        expected = draws * raw**power / (raw**power).sum()
        return float(((counts[valid] - expected) ** 2 / expected).sum())

    critical = CHI2_CRIT_001[len(valid) - 1]
    assert chi2(alpha) < critical
    assert chi2(1.0) > 20 * critical  # the test has power: priorities without the exponent are rejected


@pytest.mark.parametrize("beta", [0.4, 1.0])
def test_importance_weights_buffer_norm_hand_case(beta):
    buf = _buffer(10, 2, 1, alpha=0.5, seed=4, is_weight_norm="buffer")
    _fill(buf, [], set(), 4)  # valid rows 0, 1, 2 (row 3 waits for row 4)
    buf.update_priorities(np.array([0, 1, 2]), np.array([1.0, 4.0, 9.0]))  # p^alpha = 1, 2, 3
    prob = np.sqrt(np.array([1.0, 4.0, 9.0]) + PRIORITY_EPS)
    prob /= prob.sum()  # 1/6, 2/6, 3/6
    n = 3
    expected = (n * prob) ** -beta / ((n * prob) ** -beta).max()  # 1, 2^-beta, 3^-beta
    np.testing.assert_allclose(expected, [1.0, 2.0**-beta, 3.0**-beta], rtol=1e-6)
    seen = set()
    for _ in range(50):
        batch = buf.sample(3, beta)
        assert batch["weights"].dtype == np.float32
        np.testing.assert_allclose(batch["weights"], expected[batch["indices"]], rtol=1e-6)
        seen.update(batch["indices"].tolist())
    assert seen == {0, 1, 2}


def test_importance_weights_batch_norm_hand_worked():
    # Stored priorities v = p^alpha of a sampled batch; beta = 1: raw w = 1 / (v + 1e-5), divided by the batch max.
    v = np.array([1.0, 2.0, 4.0, 1.0])
    w = importance_weights(v, 1.0, "batch", min_positive=0.5)  # min_positive is the buffer norm's only
    np.testing.assert_allclose(w, [1.0, 1.00001 / 2.00001, 1.00001 / 4.00001, 1.0], rtol=1e-12)
    # beta = 0.5: square roots of the beta = 1 ratios; the batch's smallest priority always gets weight 1.
    w = importance_weights(np.array([4.0, 9.0]), 0.5, "batch", min_positive=0.01)
    np.testing.assert_allclose(w, [1.0, np.sqrt(4.00001 / 9.00001)], rtol=1e-12)
    # The buffer norm divides by the buffer-wide smallest priority instead: a tiny one shrinks every weight.
    w = importance_weights(np.array([4.0, 9.0]), 0.5, "buffer", min_positive=0.01)
    np.testing.assert_allclose(w, [0.05, 1 / 30], rtol=1e-12)
    assert importance_weights(np.array([1e-9]), 1.0, "batch", 1e-9)[0] == 1.0  # eps keeps a ~0 priority finite
    with pytest.raises(ValueError, match="is_weight_norm"):
        importance_weights(v, 1.0, "global", 1.0)


def test_buffer_samples_batch_normalised_weights():
    buf = _buffer(10, 2, 1, alpha=0.5, seed=4)
    _fill(buf, [], set(), 4)  # valid rows 0, 1, 2
    buf.update_priorities(np.array([0, 1, 2]), np.array([1.0, 4.0, 9.0]))  # stored v = 1, 2, 3 (+ PRIORITY_EPS)
    v = np.sqrt(np.array([1.0, 4.0, 9.0]) + PRIORITY_EPS)
    seen = set()
    for _ in range(50):
        batch = buf.sample(3, 0.7)
        raw = (v[batch["indices"]] + IS_WEIGHT_EPS) ** -0.7
        np.testing.assert_allclose(batch["weights"], raw / raw.max(), rtol=1e-6)
        assert batch["weights"].max() == 1.0
        seen.update(batch["indices"].tolist())
    assert seen == {0, 1, 2}
    with pytest.raises(ValueError, match="is_weight_norm"):
        _buffer(10, 2, 1, is_weight_norm="max")


# ----------------------------------------------------------------------------- stacks, n-step, validity


@pytest.mark.parametrize(("shape", "dtype"), [((6, 6), np.uint8), ((5, 4), np.float16)])
def test_stacks_never_cross_episode_boundaries(shape, dtype):
    capacity, stack, n_step, gamma = 30, 4, 3, 0.9
    terminals = {0, 5, 6, 12, 20, 21, 22, 40, 58, 59, 77, 93}  # 1-step episodes, a terminal at t = 0
    buf = _buffer(capacity, stack, n_step, gamma=gamma, seed=5, shape=shape, dtype=dtype)
    history = []
    for checkpoint in (10, 29, 30, 31, 33, 45, 61, 100):  # before, at and after the first wrap; filled 3 times
        _fill(buf, history, terminals, checkpoint - len(history), shape, dtype)
        seen = set()
        for _ in range(60):
            batch = buf.sample(32, 1.0)
            assert batch["obs"].shape == (32, stack, *shape) and batch["obs"].dtype == dtype
            seen |= _check_batch(buf, history, batch, stack, n_step, gamma, shape, dtype)
        assert seen == _ref_valid(history, capacity, stack, n_step)  # every valid row drawn, nothing else


def test_n_step_hand_case_and_ring_boundary():
    buf = _buffer(12, 2, 3, gamma=0.5, seed=6)
    history = []
    _fill(buf, history, {4}, 8)  # rewards 1..8, terminal after t = 4
    assert _ref_valid(history, 12, 2, 3) == {0, 1, 2, 3, 4}
    expected = {0: (2.75, 0.125), 1: (4.5, 0.125), 2: (6.25, 0.0), 3: (6.5, 0.0), 4: (5.0, 0.0)}
    batch = buf.sample(400, 1.0)
    targets = zip(batch["indices"], batch["returns"], batch["discounts"], batch["next_obs"], strict=True)
    for slot, ret, disc, nxt in targets:
        assert (ret, disc) == expected[int(slot)]
        if slot == 0:
            np.testing.assert_array_equal(nxt[:, 0, 0], [3, 4])  # stack at t = 3: frames 2, 3 (values t + 1)
        if slot == 1:
            np.testing.assert_array_equal(nxt[:, 0, 0], [4, 5])
    assert set(batch["indices"].tolist()) == set(expected)
    _fill(buf, history, {4, 17, 30}, 25)  # wrapped: stored times 21..32, terminal at 30
    # t = 21 needs row 20 for its stack (overwritten); 28 - 30 are cut by the terminal at 30; 31, 32 wait
    assert _ref_valid(history, 12, 2, 3) == {22, 23, 24, 25, 26, 27, 28, 29, 30}
    seen = set()
    for _ in range(30):
        seen |= _check_batch(buf, history, buf.sample(32, 1.0), 2, 3, 0.5, (6, 6), np.uint8)
    assert seen == {22, 23, 24, 25, 26, 27, 28, 29, 30}
    assert _ref_n_step(history, 28, 3, 0.5) == (29 + 0.5 * 30 + 0.25 * 31, 0.0)
    assert _ref_n_step(history, 26, 3, 0.5) == (27 + 0.5 * 28 + 0.25 * 29, 0.125)


@pytest.mark.parametrize(("capacity", "stack", "n_step"), [(9, 4, 3), (16, 2, 5), (25, 4, 20), (7, 1, 1)])
def test_tree_holds_priority_exactly_on_valid_rows(capacity, stack, n_step):
    rng = np.random.default_rng(capacity)
    buf = _buffer(capacity, stack, n_step, new_priority="max", seed=7)
    history = []
    for _ in range(4 * capacity):
        _fill(buf, history, {len(history)} if rng.random() < 0.15 else set(), 1)
        if len(buf) > 0 and rng.random() < 0.3:
            buf.update_priorities(rng.integers(0, len(buf), 3), rng.random(3) * 3)
        leaves = buf.tree.get(np.arange(capacity))
        expected = {t % capacity for t in _ref_valid(history, capacity, stack, n_step)}
        assert {int(s) for s in np.flatnonzero(leaves)} == expected
        on = np.array(sorted(expected), dtype=np.int64)
        np.testing.assert_array_equal(leaves[on], buf.state_dict()["priorities"][on])


def test_invalid_rows_never_sampled():
    capacity, stack, n_step = 40, 4, 5
    rng = np.random.default_rng(8)
    buf = _buffer(capacity, stack, n_step, new_priority="max", seed=8)
    history = []
    terminals = {t for t in range(200) if rng.random() < 0.1}
    for chunk in (23, 17, 1, 9, 50, 37, 13):
        _fill(buf, history, terminals, chunk)
        valid = _ref_valid(history, capacity, stack, n_step)
        newest = set(range(len(history) - n_step, len(history)))
        oldest = len(history) - len(buf)
        seen = set()
        for _ in range(300):
            batch = buf.sample(32, 0.4)
            times = set(_times(buf, batch["indices"]).tolist())
            assert times <= valid
            assert np.all(batch["weights"] <= 1.0) and np.all(batch["weights"] > 0)
            buf.update_priorities(batch["indices"], 0.5 + rng.random(32))
            seen |= times
        assert seen == valid
        unterminated = {t for t in newest if not any(history[j][1] for j in range(t, len(history)))}
        assert not seen & unterminated  # the newest rows wait for row t + n
        if oldest > 0:
            assert not seen & set(range(oldest, oldest + stack - 1))  # their stack reaches the write head


# ----------------------------------------------------------------------------- new priority, pre-fill, state


@pytest.mark.parametrize("mode", ["max", "one"])
def test_new_row_priority(mode):
    buf = _buffer(20, 2, 2, alpha=0.5, new_priority=mode, seed=9)
    history = []
    _fill(buf, history, set(), 5)  # valid 0, 1, 2
    assert buf.max_priority == 1.0
    buf.update_priorities(np.array([0, 1, 2]), np.array([3.0, 0.5, 8.0]))
    p_max = np.sqrt(8.0 + PRIORITY_EPS)
    assert buf.max_priority == pytest.approx(p_max, rel=1e-12)
    _fill(buf, history, {5}, 1)  # a terminal row is valid at once; rows 3, 4 too (appended when p_max was 1)
    leaves = buf.tree.get(np.arange(6))
    np.testing.assert_allclose(leaves[3:5], [1.0, 1.0])
    assert leaves[5] == pytest.approx(p_max if mode == "max" else 1.0, rel=1e-12)
    buf.update_priorities(np.array([0]), np.array([100.0]))
    buf.update_priorities(np.array([0]), np.array([0.1]))  # p_max never decreases
    assert buf.max_priority == pytest.approx(np.sqrt(100.0 + PRIORITY_EPS), rel=1e-12)
    _fill(buf, history, {6}, 1)
    new_value = np.sqrt(100.0 + PRIORITY_EPS) if mode == "max" else 1.0
    assert buf.tree.get(np.array([6]))[0] == pytest.approx(new_value, rel=1e-12)


@pytest.mark.parametrize(("mode", "n_prefill"), [("max", 57), ("one", 57), ("max", 9)])
def test_prefill_equals_appends(mode, n_prefill):
    rng = np.random.default_rng(10)
    frames = rng.integers(0, 256, (n_prefill, 6, 6), dtype=np.uint8)
    actions, rewards = rng.integers(0, 9, n_prefill), rng.choice([-1.0, 0.0, 1.0], n_prefill)
    terminals = rng.random(n_prefill) < 0.1
    bulk, single = (_buffer(20, 4, 3, new_priority=mode, seed=11) for _ in range(2))
    for buf in (bulk, single):
        _fill(buf, [], {4}, 8)
        buf.update_priorities(np.array([1, 2, 3]), np.array([0.5, 7.0, 2.0]))
    bulk.prefill(frames, actions, rewards, terminals)
    for row in range(n_prefill):
        single.append(frames[row], actions[row], rewards[row], terminals[row])
    for buf in (bulk, single):
        buf.append(frames[0], 1, 1.0, False)
    a, b = bulk.state_dict(), single.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_state_dict_round_trip_samples_identically():
    rng = np.random.default_rng(12)
    source_rng, restored_rng = np.random.default_rng(13), np.random.default_rng(999)
    source = PrioritizedReplay(50, (6, 6), np.uint8, 4, 5, 0.5, 0.5, "max", "batch", source_rng)
    _fill(source, [], {t for t in range(120) if rng.random() < 0.08}, 120)
    for _ in range(5):
        batch = source.sample(32, 0.5)
        source.update_priorities(batch["indices"], rng.random(32))
    restored = PrioritizedReplay(50, (6, 6), np.uint8, 4, 5, 0.5, 0.5, "max", "batch", restored_rng)
    saved = source.state_dict()
    restored.load_state_dict(saved)
    restored_rng.bit_generator.state = source_rng.bit_generator.state  # the caller restores its generator
    source.append(_frame(0, (6, 6), np.uint8), 0, 0.0, False)  # saved arrays are copies: later appends
    restored.append(_frame(0, (6, 6), np.uint8), 0, 0.0, False)  # do not reach them
    assert saved["count"] == 120
    for step in range(10):
        a, b = source.sample(32, 0.7), restored.sample(32, 0.7)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        new = rng.random(32)
        source.update_priorities(a["indices"], new)
        restored.update_priorities(b["indices"], new)
        source.append(_frame(step, (6, 6), np.uint8), 1, 1.0, step == 4)
        restored.append(_frame(step, (6, 6), np.uint8), 1, 1.0, step == 4)
    with pytest.raises(ValueError):
        _buffer(50, 4, 6, new_priority="max").load_state_dict(saved)  # another n_step


def test_nbytes_counts_the_full_capacity():
    buf = _buffer(100, 4, 3, shape=(5, 64), dtype=np.float16)
    base = 128  # the sum tree's leaves: the next power of two
    expected = 100 * (5 * 64 * 2 + 8 + 4 + 1 + 8) + 3 * 2 * base * 8  # frames, actions, rewards, terminals, priorities
    assert buf.nbytes == expected  # before any row is written


def test_state_dict_holds_the_filled_rows_and_restores_any_buffer_exactly():
    """A checkpoint of a partly filled buffer holds only its filled rows; restoring it into a fresh buffer, into a
    used one (rows beyond them cleared) and from an old-style full-size state gives the same buffer and samples."""
    source = _buffer(50, 4, 3, new_priority="max", seed=1)
    _fill(source, [], {7}, 20)
    saved = source.state_dict()
    assert saved["frames"].shape == (20, 6, 6) and saved["priorities"].shape == (20,)
    views = source.state_dict(copy=False)
    assert np.shares_memory(views["frames"], source._frames) and not np.shares_memory(saved["frames"], source._frames)
    used = _buffer(50, 4, 3, new_priority="max", seed=1)
    _fill(used, [], set(), 45)  # different content in rows 20-44
    fresh = _buffer(50, 4, 3, new_priority="max", seed=1)
    full = {k: (np.concatenate([v, np.zeros((30, *v.shape[1:]), v.dtype)]) if k in ("frames", "actions", "rewards",
                                                                                    "terminals", "priorities") else v)
            for k, v in saved.items()}  # what checkpoints held before: every row
    for target, state in ((used, saved), (fresh, saved), (_buffer(50, 4, 3, new_priority="max", seed=1), full)):
        target.load_state_dict(state)
        for name in ("frames", "actions", "rewards", "terminals", "priorities"):
            np.testing.assert_array_equal(getattr(target, f"_{name}"), getattr(source, f"_{name}"), err_msg=name)
        target._rng = np.random.default_rng(5)
        source._rng = np.random.default_rng(5)
        a, b = source.sample(8, 0.5), target.sample(8, 0.5)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    short = {**saved, "frames": saved["frames"][:10]}
    with pytest.raises(ValueError, match="frames: saved 10 rows, the buffer's count needs 20 to 50"):
        fresh.load_state_dict(short)


# ----------------------------------------------------------------------------- MLR windows (SPEC §15.1)


@pytest.mark.parametrize(("capacity", "stack", "n_step", "exclude"), [(60, 4, 10, 27), (30, 2, 3, 5), (45, 4, 20, 0)])
def test_tree_excludes_the_newest_rows_exactly(capacity, stack, n_step, exclude):
    rng = np.random.default_rng(exclude)
    buf = _buffer(capacity, stack, n_step, new_priority="max", seed=3, exclude_newest=exclude)
    history = []
    for _ in range(3 * capacity):
        _fill(buf, history, {len(history)} if rng.random() < 0.1 else set(), 1)
        if len(buf) > 0 and rng.random() < 0.3:
            buf.update_priorities(rng.integers(0, len(buf), 3), rng.random(3) * 3)
        leaves = buf.tree.get(np.arange(capacity))
        expected = {t % capacity for t in _ref_valid(history, capacity, stack, n_step, exclude)}
        assert {int(s) for s in np.flatnonzero(leaves)} == expected


def test_windows_never_start_in_the_newest_27_rows():
    """MLR's replay (n 10, T 16): 1 + n + T = 27 newest start indices are never sampled, terminals or not."""
    buf = _buffer(400, 4, 10, exclude_newest=27, seed=5)
    history, rng = [], np.random.default_rng(5)
    terminals = {t for t in range(300) if rng.random() < 0.05}
    for chunk in (40, 1, 26, 60, 13, 100):
        _fill(buf, history, terminals, chunk)
        for _ in range(50):
            times = _times(buf, buf.sample(32, 0.4, window=16)["indices"])
            assert times.max() <= len(history) - 28


def _ref_window(history, t, length, stack, shape, dtype):
    """Naive window: steps after the first terminal row repeat its stack; actions as stored; alive before it."""
    terms = [term for _, term in history]
    first = next((k for k in range(length) if t + k < len(history) and terms[t + k]), None)
    obs, actions, alive = [], [], []
    for k in range(length):
        source = t + k if first is None or k <= first else t + first
        obs.append(_ref_stack(history, source, stack, shape, dtype))
        actions.append((t + k) % 7 if t + k < len(history) else 0)
        alive.append(first is None or k < first)
    return np.stack(obs), np.array(actions), np.array(alive)


def test_windows_equal_the_naive_reference_and_repeat_after_an_episode_end():
    buf = _buffer(200, 4, 10, exclude_newest=27, seed=9)
    history = []
    _fill(buf, history, {12, 40, 41, 90}, 150)
    seen_cut = False
    for _ in range(40):
        batch = buf.sample(16, 0.5, window=16)
        for b, t in enumerate(_times(buf, batch["indices"]).tolist()):
            obs, actions, alive = _ref_window(history, t, 16, 4, (6, 6), np.uint8)
            np.testing.assert_array_equal(batch["window_obs"][b], obs)
            np.testing.assert_array_equal(batch["window_actions"][b], actions)
            np.testing.assert_array_equal(batch["window_alive"][b], alive)
            np.testing.assert_array_equal(batch["window_obs"][b, 0], batch["obs"][b])  # step 0 is the RL input
            seen_cut |= not alive.all()
    assert seen_cut


def test_window_hand_case_across_an_episode_end():
    """Rows 0..29, terminal at 12; the window from t = 5: steps 0..7 are rows 5..12, steps 8..15 repeat row 12."""
    buf = _buffer(64, 2, 15, seed=0)
    history = []
    _fill(buf, history, {12}, 30)
    window = buf._windows(np.array([5]), 16)
    frames = window["window_obs"][0, :, -1, 0, 0]  # newest frame of each step's stack: value time + 1
    np.testing.assert_array_equal(frames, [6, 7, 8, 9, 10, 11, 12, 13] + [13] * 8)
    np.testing.assert_array_equal(window["window_actions"][0], [t % 7 for t in range(5, 21)])
    np.testing.assert_array_equal(window["window_alive"][0], [True] * 7 + [False] * 9)
    np.testing.assert_array_equal(window["window_obs"][0, 8:, 0, 0, 0], [12] * 8)  # the repeated stack's older frame


def test_window_longer_than_the_written_rows_guarantee_is_refused():
    buf = _buffer(64, 4, 3, exclude_newest=5)
    _fill(buf, [], set(), 30)
    with pytest.raises(ValueError, match="window 16 needs n_step or exclude_newest >= 15"):
        buf.sample(4, 0.5, window=16)
    with pytest.raises(ValueError, match="exclude_newest must be in"):
        _buffer(64, 4, 3, exclude_newest=64)


def test_a_checkpoint_saved_before_exclude_newest_loads():
    buf = _buffer(50, 4, 5, seed=1)
    _fill(buf, [], {7}, 30)
    state = buf.state_dict()
    state["config"] = state["config"][:6]  # the 6-entry config of older checkpoints
    restored = _buffer(50, 4, 5, seed=1)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.tree.get(np.arange(50)), buf.tree.get(np.arange(50)))
    with pytest.raises(ValueError, match="differs"):
        _buffer(50, 4, 5, exclude_newest=3).load_state_dict(state)
