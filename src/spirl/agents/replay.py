"""Prioritised n-step replay over the frames of one environment (SPEC §8 PER, §7 embeddings, §9.5 pre-fill).

Storage: one row per agent step t, in time order, in a ring of `capacity` rows. Row t holds the newest frame
seen when the action was chosen (a uint8 image or a float16 (K_max, D) embedding matrix), the action, the
clipped reward and `terminal` (the episode ended after this action). Frames are stored once; the stack of
frames t-stack+1..t (oldest first) is rebuilt at sampling time, with every frame of an earlier episode set
to zero, as the environment's own stack after a reset ([0, 0, 0, first]). Rows before the first row ever
written count as an earlier episode, so the first row must start an episode; a caller that pre-fills a data
set ending mid-episode marks its last row terminal if the next append starts a fresh episode.

Times: row t ("global time", rows ever appended before it) lives in slot t % capacity. With T rows appended
and L = min(T, capacity) stored, the stored times are [T - L, T - 1].

Validity: row t may be sampled iff
  (a) future: row t + n is written (t + n <= T - 1), or a terminal lies in rows t..min(t + n - 1, T - 1);
  (b) past: rows t - stack + 1..t are all stored (t - stack + 1 >= T - L), or nothing was ever overwritten
      (T <= capacity; times < 0 are "before the first episode" and read as zeros).
  (c) newest: t < T - exclude_newest (0 by default; rlpyt's prioritized replay, which MLR uses, never samples its
      newest 1 + n + window starts, SPEC §15.1).
So rows t - stack + 1..t + n (cut after a terminal) are stored and none was overwritten by the write head.
Invariant, after every public call: sum-tree leaf of slot s = priorities[s] (p^alpha) if its row is valid,
else 0. An append at time T can change validity only for (i) its own slot (old row gone, new row in),
(ii) rows T - max(n, exclude_newest)..T - 1 (row T completes t + n, or its terminal cuts their window, or row
T - exclude_newest leaves the newest rows), (iii) the stack - 1 oldest rows (their stack now reaches the overwritten
row); `append` re-evaluates exactly these. Invalid rows keep
their priority in `priorities` and get it back in the tree if they become valid.

Priorities: tree values are p^alpha. New rows get `max_priority` ("max": the largest (|p| + eps)^alpha ever
given to `update_priorities`, 1.0 initially; Rainbow's rule) or 1.0 ("one": released SPIRL code, SPEC §12 #13).

Windows (MLR, SPEC §15.1): `sample(..., window=T)` also returns the stacks at t..t+T-1 and their actions. Windows that
cross an episode end are kept: after the first terminal row t+k of the window, the later steps repeat the stack at
t+k (the released code's rule) while their actions stay as stored; `window_alive` marks the steps before the first
terminal, for a caller that masks the rest instead (SPR's rule: steps k.. are zeroed).
"""

from __future__ import annotations

import numpy as np

from spirl.agents.sumtree import SumTree, copy_into, last_per_index
from spirl.params import IS_WEIGHT_NORMS, NEW_PRIORITIES  # replay.is_weight_norm, replay.new_priority

# Added to |TD error| before the power, so a transition with zero error keeps a non-zero chance (PER).
PRIORITY_EPS = 1e-6
# Added to the stored priority p^alpha before the IS power in the batch-normalised weights (released code).
IS_WEIGHT_EPS = 1e-5


def importance_weights(tree_values: np.ndarray, beta: float, norm: str, min_positive: float) -> np.ndarray:
    """PER importance-sampling weights of one sampled batch (SPEC §8).

    batch (released code): w_i = (1 / (v_i + 1e-5))^beta / max_batch (1 / (v_j + 1e-5))^beta, with v = p^alpha
    the stored priority, so the batch's largest weight is exactly 1.
    buffer (Schaul et al. 2016): w_i = (N P(i))^-beta / max_all (N P(j))^-beta = (v_i / v_min)^-beta, with v_min
    the smallest positive stored priority in the whole buffer.

    Args:
        tree_values: [B] stored priorities v_i > 0 of the sampled rows.
        beta: IS exponent in [0, 1].
        norm: "batch" or "buffer".
        min_positive: v_min, the buffer's smallest positive stored priority (used by "buffer" only).
    Returns:
        [B] float64 weights in (0, 1].
    """
    values = np.asarray(tree_values, np.float64)
    if norm == "batch":
        raw = (1.0 / (values + IS_WEIGHT_EPS)) ** beta
        return raw / raw.max()
    if norm == "buffer":
        return (values / min_positive) ** -beta
    raise ValueError(f"replay.is_weight_norm must be one of {IS_WEIGHT_NORMS}, got {norm!r}")


_ARRAYS = ("frames", "actions", "rewards", "terminals", "priorities")  # per-slot arrays of the buffer


class PrioritizedReplay:
    """Ring buffer of one environment's steps with proportional PER, n-step returns and frame stacks rebuilt."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype | type,
        stack: int,
        n_step: int,
        gamma: float,
        alpha: float,
        new_priority: str,
        is_weight_norm: str,
        generator: np.random.Generator,
        exclude_newest: int = 0,
    ) -> None:
        """Empty buffer.

        Args:
            capacity: rows kept (the oldest is overwritten), > stack + n_step.
            frame_shape: one frame, e.g. (84, 84) uint8 images or (K_max, 64) float16 embeddings.
            frame_dtype: storage dtype of a frame.
            stack: frames per observation (4).
            n_step: n of the n-step return (SPEC §8: 20).
            gamma: discount per step.
            alpha: priority exponent (tree values are p^alpha).
            new_priority: "max" (current max priority) or "one" (1.0) for new rows.
            is_weight_norm: "batch" (released code) or "buffer" (Schaul et al.): see `importance_weights`.
            generator: the only source of randomness (stratified sampling); its state is the caller's to save.
            exclude_newest: the newest rows are never sampled (validity (c)); 0 for DE-Rainbow, 1 + n + T for MLR.
        """
        if stack < 1 or n_step < 1 or capacity <= stack + n_step:
            raise ValueError(f"need stack >= 1, n_step >= 1, capacity > stack + n_step: {capacity}, {stack}, {n_step}")
        if not 0.0 <= gamma <= 1.0 or alpha < 0.0:
            raise ValueError(f"need gamma in [0, 1] and alpha >= 0, got {gamma}, {alpha}")
        if exclude_newest < 0 or exclude_newest >= capacity:
            raise ValueError(f"exclude_newest must be in [0, capacity), got {exclude_newest}")
        if new_priority not in NEW_PRIORITIES:
            raise ValueError(f"new_priority must be one of {NEW_PRIORITIES}, got {new_priority!r}")
        if is_weight_norm not in IS_WEIGHT_NORMS:
            raise ValueError(f"is_weight_norm must be one of {IS_WEIGHT_NORMS}, got {is_weight_norm!r}")
        self._is_weight_norm = is_weight_norm
        self._capacity, self._stack, self._n, self._gamma, self._alpha = capacity, stack, n_step, gamma, alpha
        self._new_priority, self._exclude_newest = new_priority, exclude_newest
        self._rng = generator
        self._frame_shape = tuple(int(d) for d in frame_shape)
        self._frames = np.zeros((capacity, *self._frame_shape), np.dtype(frame_dtype))
        self._actions = np.zeros(capacity, np.int64)
        self._rewards = np.zeros(capacity, np.float32)
        self._terminals = np.zeros(capacity, np.bool_)
        self._priorities = np.zeros(capacity, np.float64)  # p^alpha per slot, valid or not
        self._tree = SumTree(capacity)
        self._count = 0  # rows ever appended = global time of the next row
        self._max_priority = 1.0
        self._powers = gamma ** np.arange(n_step + 1, dtype=np.float64)  # [n + 1]: gamma^0..gamma^n

    @property
    def capacity(self) -> int:
        """Rows the ring holds."""
        return self._capacity

    @property
    def max_priority(self) -> float:
        """p_max: largest (|p| + eps)^alpha given to `update_priorities`, 1.0 before any."""
        return self._max_priority

    @property
    def tree(self) -> SumTree:
        """The sum tree (read it; write through the buffer only)."""
        return self._tree

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer's arrays at full capacity (allocated up front; pages are touched as rows arrive)."""
        tree = sum(v.nbytes for v in self._tree.state_dict().values())
        return tree + sum(getattr(self, f"_{name}").nbytes for name in _ARRAYS)

    def __len__(self) -> int:
        """Rows stored, min(appended, capacity) (valid or not)."""
        return min(self._count, self._capacity)

    def _new_value(self) -> float:
        """Tree value of a new row: p_max ("max") or 1.0 ("one")."""
        return self._max_priority if self._new_priority == "max" else 1.0

    def _valid(self, times: np.ndarray) -> np.ndarray:
        """Validity (module docstring, (a) and (b)) of rows at global times [M] -> [M] bool."""
        count, oldest = self._count, self._count - len(self)
        window = times[:, None] + np.arange(self._n)  # [M, n]: t..t+n-1
        cut = np.any(self._terminals[window % self._capacity] & (window < count), axis=1)
        future_ok = (times + self._n < count) | cut
        past_ok = (times - self._stack + 1 >= oldest) | (oldest == 0)
        return future_ok & past_ok & (times >= oldest) & (times < count - self._exclude_newest)

    def _refresh(self, times: np.ndarray) -> None:
        """Write tree leaf = priority if valid else 0 for the rows at global times [M]."""
        slots = times % self._capacity
        self._tree.update(slots, np.where(self._valid(times), self._priorities[slots], 0.0))

    def append(self, obs: np.ndarray, action: int, reward: float, terminal: bool) -> None:
        """Store step t = number of rows appended so far (overwrites the oldest row when full).

        Args:
            obs: [*frame_shape] the newest frame when the action was chosen.
            action: action index.
            reward: clipped reward.
            terminal: the episode ended after this action (life loss, game over or cap).
        """
        obs = self._check_frames(np.asarray(obs)[None])[0]
        time = self._count
        slot = time % self._capacity
        self._frames[slot] = obs
        self._actions[slot], self._rewards[slot], self._terminals[slot] = action, reward, terminal
        self._priorities[slot] = self._new_value()
        self._count += 1
        oldest = self._count - len(self)
        newest = np.arange(max(oldest, time - max(self._n, self._exclude_newest)), time + 1)
        edge = np.arange(oldest, min(oldest + self._stack - 1, time + 1))
        self._refresh(np.concatenate([edge, newest]))

    def prefill(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminals: np.ndarray) -> None:
        """Append M rows at once, leaving exactly the state M one-by-one `append` calls would leave.

        Args:
            frames: [M, *frame_shape]; actions: [M] int; rewards: [M] float; terminals: [M] bool.
        """
        frames = self._check_frames(np.asarray(frames))
        m = frames.shape[0]
        if not len(actions) == len(rewards) == len(terminals) == m:
            raise ValueError("prefill arrays differ in length")
        keep = min(m, self._capacity)  # earlier rows would be overwritten within the pre-fill itself
        slots = (self._count + np.arange(m - keep, m)) % self._capacity
        self._frames[slots] = frames[m - keep :]
        self._actions[slots] = np.asarray(actions)[m - keep :]
        self._rewards[slots] = np.asarray(rewards)[m - keep :]
        self._terminals[slots] = np.asarray(terminals)[m - keep :]
        self._priorities[slots] = self._new_value()  # p_max cannot change during appends
        self._count += m
        self._refresh(np.arange(self._count - len(self), self._count))

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        """Check [M, *frame_shape] frames and a same-kind cast to the storage dtype; returns them."""
        if frames.shape[1:] != self._frame_shape:
            raise ValueError(f"frame shape {frames.shape[1:]}, buffer stores {self._frame_shape}")
        if not np.can_cast(frames.dtype, self._frames.dtype, "same_kind"):
            raise TypeError(f"cannot store {frames.dtype} frames as {self._frames.dtype}")
        return frames

    def _stacks(self, times: np.ndarray) -> np.ndarray:
        """Frame stacks at global times [B] -> [B, stack, *frame_shape], earlier-episode frames zeroed."""
        t = times[:, None] + np.arange(1 - self._stack, 1)  # [B, S], oldest first
        out = self._frames[t % self._capacity]  # [B, S, *frame_shape]
        prev = t[:, :-1]  # [B, S - 1]: an episode ending here (or time < 0) hides this frame and older ones
        ended = self._terminals[prev % self._capacity] | (prev < 0)
        earlier = np.logical_or.accumulate(ended[:, ::-1], axis=1)[:, ::-1]
        out[:, :-1][earlier] = 0
        return out

    def _n_step(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """n-step returns sum_k gamma^k r_{t+k} up to the first terminal (inclusive), and done flags.

        Args:
            times: [B] global times of valid rows.
        Returns:
            (returns [B] float64, done [B] bool: a terminal lies in t..t+n-1).
        """
        window = (times[:, None] + np.arange(self._n)) % self._capacity  # [B, n]
        term = self._terminals[window]
        alive = np.ones_like(term)  # [B, n]: no terminal before step k of the window
        alive[:, 1:] = ~np.logical_or.accumulate(term[:, :-1], axis=1)
        rewards = np.where(alive, self._rewards[window].astype(np.float64), 0.0)
        return rewards @ self._powers[: self._n], np.any(term & alive, axis=1)

    def _windows(self, times: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """The windows t..t+length-1 of rows at global times [B] (module docstring, Windows).

        Returns: window_obs [B, length, stack, *frame_shape]; window_actions [B, length] int64 (0 on rows not yet
        written); window_alive [B, length] bool (step k lies before the window's first terminal row).
        Every row read is written: a valid row has rows t..t+max(n, exclude_newest) written or a terminal before them.
        """
        if length - 1 > max(self._n, self._exclude_newest):
            raise ValueError(f"window {length} needs n_step or exclude_newest >= {length - 1} "
                             f"(have {self._n}, {self._exclude_newest}): its last rows may be unwritten")
        steps = times[:, None] + np.arange(length)  # [B, L]
        written = steps < self._count
        terminal = self._terminals[steps % self._capacity] & written  # [B, L]
        seen = np.logical_or.accumulate(terminal, axis=1)  # [B, L]: a terminal at step <= k
        alive = ~seen
        first = np.where(seen.any(axis=1), terminal.argmax(axis=1), length - 1)  # [B] first terminal step
        source = np.minimum(steps, (times + first)[:, None])  # [B, L]: steps after it repeat it
        obs = self._stacks(source.reshape(-1)).reshape(*steps.shape, self._stack, *self._frame_shape)
        actions = np.where(written, self._actions[steps % self._capacity], 0)
        return {"window_obs": obs, "window_actions": actions, "window_alive": alive}

    def sample(self, batch_size: int, beta: float, window: int = 0) -> dict[str, np.ndarray]:
        """Stratified proportional sample of valid rows with IS weights (PER, Schaul et al. 2016).

        Args:
            batch_size: B; the total priority is split into B equal segments, one uniform draw in each.
            beta: IS exponent of the weights (`importance_weights`, normalised as `is_weight_norm` says).
            window: T > 0 adds the windows of `_windows` (MLR), T steps from t.
        Returns:
            indices [B] int64 slots (for `update_priorities`); obs [B, stack, *frame_shape] (stack at t);
            actions [B] int64; returns [B] float32; discounts [B] float32 (gamma^n, 0 if a terminal is in
            t..t+n-1); next_obs [B, stack, *frame_shape] (stack at t+n, zeros where discounts is 0 by a
            terminal); weights [B] float32 in (0, 1]; and with window > 0 window_obs, window_actions, window_alive.
        """
        total = self._tree.total()
        if not total > 0:
            raise RuntimeError("no valid transition to sample yet")
        values = (np.arange(batch_size) + self._rng.random(batch_size)) * (total / batch_size)
        slots = self._tree.find(values)
        times = self._count - 1 - (self._count - 1 - slots) % self._capacity
        returns, done = self._n_step(times)
        next_obs = np.zeros((batch_size, self._stack, *self._frame_shape), self._frames.dtype)
        next_obs[~done] = self._stacks(times[~done] + self._n)
        weights = importance_weights(self._tree.get(slots), beta, self._is_weight_norm, self._tree.min_positive)
        batch = {
            "indices": slots,
            "obs": self._stacks(times),
            "actions": self._actions[slots].copy(),
            "returns": returns.astype(np.float32),
            "discounts": np.where(done, 0.0, self._powers[self._n]).astype(np.float32),
            "next_obs": next_obs,
            "weights": weights.astype(np.float32),
        }
        return batch | (self._windows(times, window) if window > 0 else {})

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set priorities[i] = (|p| + eps)^alpha (last wins if repeated) and raise p_max; invalid rows stay 0.

        Args:
            indices: [M] slots from `sample`, each holding a stored row.
            priorities: [M] new raw priorities (e.g. the per-sample loss).
        """
        idx = np.asarray(indices, np.int64).reshape(-1)
        values = (np.abs(np.asarray(priorities, np.float64).reshape(-1)) + PRIORITY_EPS) ** self._alpha
        if idx.shape != values.shape:
            raise ValueError(f"indices {idx.shape} and priorities {values.shape} differ in shape")
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= len(self) or not np.all(np.isfinite(values)):
            raise ValueError("indices must be stored slots and priorities finite")
        idx, values = last_per_index(idx, values)
        self._priorities[idx] = values
        self._max_priority = max(self._max_priority, float(values.max()))
        self._refresh(self._count - 1 - (self._count - 1 - idx) % self._capacity)

    def state_dict(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Every array and counter (numpy), enough to restore sampling exactly with the same generator.

        The per-slot arrays hold their filled rows only (min(count, capacity)): an early checkpoint of a 400K buffer
        is small, and nothing untouched is read. copy=False returns views of them, for a caller that writes them out
        before the next append (a checkpoint): no second copy of a full buffer in memory.
        """
        state = {f"tree_{k}": v for k, v in self._tree.state_dict().items()}
        filled = min(self._count, self._capacity)
        for name in _ARRAYS:
            rows = getattr(self, f"_{name}")[:filled]
            state[name] = rows.copy() if copy else rows
        state.update(count=np.asarray(self._count, np.int64), max_priority=np.asarray(self._max_priority))
        return state | {"config": self._config()}

    def _config(self) -> np.ndarray:
        """[7] float64: capacity, stack, n_step, gamma, alpha, new_priority ("max" 1, "one" 0), exclude_newest;
        checked on load (a 6-entry config, saved before exclude_newest existed, reads as exclude_newest 0)."""
        flag = 1.0 if self._new_priority == "max" else 0.0
        return np.asarray([self._capacity, self._stack, self._n, self._gamma, self._alpha, flag, self._exclude_newest],
                          np.float64)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a `state_dict` from a buffer built with the same arguments (the generator is the caller's)."""
        saved = np.asarray(state["config"], np.float64)
        if not np.array_equal(np.pad(saved, (0, 7 - saved.size)) if saved.size == 6 else saved, self._config()):
            raise ValueError(f"saved buffer config {state['config']} differs from {self._config()}")
        self._tree.load_state_dict({k: state[f"tree_{k}"] for k in ("sum", "min", "max")})
        filled = min(int(state["count"]), self._capacity)
        for name in _ARRAYS:  # the filled rows (checkpoints from before that rule hold every row: also accepted)
            source, target = np.asarray(state[name]), getattr(self, f"_{name}")
            rows = source.shape[0] if source.ndim else -1
            if not filled <= rows <= self._capacity:
                raise ValueError(f"{name}: saved {rows} rows, the buffer's count needs {filled} to {self._capacity}")
            copy_into(target[:rows], source, name)
            if rows < self._capacity and target[rows:].any():  # a used buffer restored: clear what was not saved
                target[rows:] = 0
        self._count = int(state["count"])
        self._max_priority = float(state["max_priority"])
