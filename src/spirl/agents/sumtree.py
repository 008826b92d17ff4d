"""The sum tree of proportional prioritised replay (PER, Schaul et al. 2016, SPEC §8).

Leaf i holds the priority of replay slot i; each inner node holds the sum, the smallest positive leaf and the
largest leaf below it. A proportional draw is then a prefix-sum search of O(log capacity) steps (`SumTree.find`),
and the root gives the total, the smallest positive priority (the normaliser of the "buffer" importance weights)
and the largest, in O(1). `spirl.agents.replay.PrioritizedReplay` keeps one tree over its ring of rows."""

from __future__ import annotations

import numpy as np


def last_per_index(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate [M] (index, value) pairs keeping each index's last value -> (indices [U] ascending, values [U])."""
    unique, first_in_reversed = np.unique(indices[::-1], return_index=True)
    return unique, values[::-1][first_in_reversed]


class SumTree:
    """Array binary tree over `capacity` float64 leaves keeping subtree sums, minima of positive leaves and maxima.

    Layout: 1-based heap, root at 1, node i has children 2i, 2i+1; leaves at base..base+capacity-1 with base
    the smallest power of two >= capacity, so leaf order is index order (padding leaves stay 0).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._base = 1 << (self._capacity - 1).bit_length()
        self._depth = self._base.bit_length() - 1
        self._sum = np.zeros(2 * self._base, np.float64)
        self._min = np.full(2 * self._base, np.inf)  # min over positive leaves; inf where none
        self._max = np.zeros(2 * self._base, np.float64)

    @property
    def capacity(self) -> int:
        """Number of leaves."""
        return self._capacity

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves[indices] = priorities (the last one wins for a repeated index) and refresh their ancestors.

        Args:
            indices: [M] leaf indices in [0, capacity).
            priorities: [M] finite values >= 0 (0 = never found).
        """
        idx = self._checked(indices).reshape(-1)
        val = np.asarray(priorities, np.float64).reshape(-1)
        if idx.shape != val.shape:
            raise ValueError(f"indices {idx.shape} and priorities {val.shape} differ in shape")
        if idx.size == 0:
            return
        if not np.all(np.isfinite(val) & (val >= 0)):
            raise ValueError("priorities must be finite and >= 0")
        idx, val = last_per_index(idx, val)
        nodes = idx + self._base
        self._sum[nodes] = val
        self._min[nodes] = np.where(val > 0, val, np.inf)
        self._max[nodes] = val
        for _ in range(self._depth):  # all leaves at one depth: a level per pass (repeated parents get equal values)
            nodes = nodes // 2
            left, right = 2 * nodes, 2 * nodes + 1
            self._sum[nodes] = self._sum[left] + self._sum[right]
            self._min[nodes] = np.minimum(self._min[left], self._min[right])
            self._max[nodes] = np.maximum(self._max[left], self._max[right])

    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._sum[1])

    @property
    def max_priority(self) -> float:
        """Largest leaf now in the tree (0.0 when empty)."""
        return float(self._max[1])

    @property
    def min_positive(self) -> float:
        """Smallest positive leaf now in the tree (inf when none)."""
        return float(self._min[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values: indices [...] in [0, capacity) -> [...] float64."""
        return self._sum[self._checked(indices) + self._base]

    def _checked(self, indices: np.ndarray) -> np.ndarray:
        """Indices as int64, raising IndexError outside [0, capacity)."""
        idx = np.asarray(indices, np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._capacity):
            raise IndexError(f"leaf index out of [0, {self._capacity})")
        return idx

    def find(self, values: np.ndarray) -> np.ndarray:
        """Prefix-sum search: leaf i with S_i <= v < S_{i+1}, S_i = sum of leaves before i.

        A value on a boundary goes to the leaf that starts there; zero leaves are never returned (a value at or
        past the total, or pushed there by rounding, gives the last positive leaf; a negative one the first).

        Args:
            values: [...] float values in [0, total()).
        Returns:
            [...] int64 leaf indices, each with a positive leaf.
        """
        if not self._sum[1] > 0:
            raise ValueError("find on a tree whose total is 0")
        v = np.maximum(np.asarray(values, np.float64), 0.0)
        node = np.ones(v.shape, np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_sum = self._sum[left]
            go_right = (v >= left_sum) & (self._sum[left + 1] > 0)
            v = np.where(go_right, v - left_sum, v)
            node = np.where(go_right, left + 1, left)
        return node - self._base

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the node arrays: sum, min, max, each [2 * base] float64."""
        return {name: getattr(self, f"_{name}").copy() for name in ("sum", "min", "max")}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the node arrays written by `state_dict` (same capacity)."""
        for name in ("sum", "min", "max"):
            copy_into(getattr(self, f"_{name}"), state[name], name)


def copy_into(target: np.ndarray, source: np.ndarray, name: str) -> None:
    """Copy the saved array `source` into the live `target` in place, after checking shape and dtype."""
    source = np.asarray(source)
    if source.shape != target.shape or source.dtype != target.dtype:
        raise ValueError(f"{name}: saved {source.shape} {source.dtype}, buffer has {target.shape} {target.dtype}")
    np.copyto(target, source)
