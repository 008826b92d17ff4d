"""Explicit, reproducible seeds: every random stream is derived from a base seed and named keys."""

from __future__ import annotations

import hashlib

import numpy as np


def _key_word(key: str | int) -> int:
    """A stable 32-bit word for a key (unlike hash(), independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:4], "little")


def derive_seed(base: int, *keys: str | int) -> int:
    """Seed in [0, 2**63) for the stream named by `keys` under `base` (e.g. base, "collect", game)."""
    if isinstance(base, bool) or not isinstance(base, int) or base < 0:
        raise ValueError(f"base seed must be a non-negative integer, got {base!r}")
    seq = np.random.SeedSequence([base, *(_key_word(k) for k in keys)])
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator(base: int, *keys: str | int) -> np.random.Generator:
    """A numpy Generator (PCG64) for the stream named by `keys` under `base`."""
    return np.random.Generator(np.random.PCG64(derive_seed(base, *keys)))
