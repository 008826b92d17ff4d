"""What training and evaluation need of a per-frame representation (SPEC §7), and an adapter for a plain function.

A representation turns each arriving frame into what the agent stacks and the replay stores, once per frame,
batched over the envs that step together. It may keep a memory per stream (one stream per env: the previous frame
or error map of an incremental scorer), which a checkpoint carries (`state` / `restore`) and which is dropped when
an evaluation's envs are gone (`forget`). The pipeline's representation is `spirl.agents.represent.Represent`;
a function of the frames alone (a test's synthetic embeddings) becomes one through `StatelessRepresentation`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

Reps = np.ndarray | torch.Tensor  # [B, *rep_shape] representations of B frames


@runtime_checkable
class Representation(Protocol):
    """A per-frame representation with a memory per stream (see module doc)."""

    def __call__(self, frames: np.ndarray, streams: Sequence[Hashable] | None = None,
                 starts: Sequence[bool] | None = None) -> Reps:
        """Representations [B, *rep_shape] (numpy or torch) of frames [B, H, W, 3] uint8.

        With `streams` ([B] keys, one per frame: the env it came from) and `starts` ([B] bool, the frame begins an
        episode), the representation may read and update its memory of each stream; without, it uses none.
        """
        ...

    def state(self, stream: Hashable) -> Any:
        """The memory of `stream`, for a checkpoint (None: none)."""
        ...

    def restore(self, stream: Hashable, state: Any) -> None:
        """Continue `stream` from a checkpoint's `state` (None: from scratch)."""
        ...

    def forget(self, streams: Sequence[Hashable]) -> None:
        """Drop the memory of streams that ended (an evaluation's envs)."""
        ...


class StatelessRepresentation:
    """A `Representation` without memory: `fn(frames [B, H, W, 3] uint8) -> [B, *rep_shape]`, streams ignored."""

    def __init__(self, fn: Callable[[np.ndarray], Reps]) -> None:
        self.fn = fn

    def __call__(self, frames: np.ndarray, streams: Sequence[Hashable] | None = None,
                 starts: Sequence[bool] | None = None) -> Reps:
        return self.fn(frames)

    def state(self, stream: Hashable) -> None:
        """None: there is no memory to save."""
        return None

    def restore(self, stream: Hashable, state: Any) -> None:
        """Accept only None: a memory saved by a representation that had one cannot be continued without it."""
        if state is not None:
            raise ValueError(f"a stateless representation cannot restore the memory of stream {stream!r}: the "
                             "checkpoint was written with a representation that keeps one")

    def forget(self, streams: Sequence[Hashable]) -> None:
        """Nothing to drop."""


def checked_representation(represent: Any) -> Representation:
    """`represent` itself if it has the methods of `Representation`; TypeError otherwise (a bare function, say)."""
    if not isinstance(represent, Representation):
        raise TypeError(f"a representation needs __call__, state, restore and forget (training.representation."
                        f"Representation); got {type(represent).__name__}: wrap a function of the frames alone "
                        "in StatelessRepresentation")
    return represent
