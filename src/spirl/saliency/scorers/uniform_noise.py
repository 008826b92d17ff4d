"""Uniform noise as a scorer (SPEC §13, a control: selection with no criterion): i.i.d. U[0, 1) per patch.

Every draw comes from an explicit torch.Generator seeded under the registry's one key SEED_KEY:
  frame and sequence forms: the caller's generator, for an archive derive_seed(criteria.seed, SEED_KEY, game)
      (spirl.saliency.registry.archive_seed), drawn row after row;
  stream form: one generator per frame stream, (re)seeded at each episode start from
      derive_seed(0, SEED_KEY, repr(stream), frames the stream had seen) (RandomStreamScorer).
"""

from __future__ import annotations

import torch

from spirl.common.seeding import derive_seed
from spirl.saliency.registry import SEED_KEY
from spirl.saliency.scorers.base import Scorer, StreamScorer, patch_count, streams_and_starts


def random_scores(batch: int, num_patches: int, generator: torch.Generator,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Random scores: i.i.d. U[0, 1), drawn only from `generator` (the run's seeded stream), row-major.

    Args: batch B; num_patches N; generator an explicit torch.Generator (drawn on its own device); device where
        the result goes (None: the generator's device).
    Returns: float32 [B, N].
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError("random_scores needs an explicit torch.Generator")
    if batch < 0 or num_patches < 1:
        raise ValueError(f"need batch >= 0 and num_patches >= 1, got {batch}, {num_patches}")
    out = torch.rand(batch, num_patches, generator=generator, device=generator.device, dtype=torch.float32)
    return out if device is None else out.to(device)


class UniformNoiseScorer(Scorer):
    """i.i.d. U[0, 1) scores: from the caller's generator (frame and sequence forms), per stream (stream form)."""

    computes = "uniform_noise"

    def frames(self, frames, previous=None, has_previous=None, generator=None):
        if generator is None:
            raise ValueError(f"scorer {self.name!r} draws its scores from a seeded stream: pass its torch.Generator "
                             "(an archive's: spirl.saliency.registry.archive_seed)")
        batch, height, width = (int(v) for v in frames.shape[:3])
        return random_scores(batch, patch_count(height, width, self.models.patch_size), generator)

    def stream(self) -> StreamScorer:
        return RandomStreamScorer(self.models.num_patches)


class RandomStreamScorer(StreamScorer):
    """i.i.d. U[0, 1) scores from a seeded stream per frame stream.

    At each start a stream's generator is (re)seeded from derive_seed(0, SEED_KEY, repr(stream), n), n the number of
    frames the stream had seen, so the draws depend only on the stream's key (which names the run: a RunKey, or
    (RunKey, "eval", env step, env index)) and its own history, never on other streams or on how runs are grouped in
    a process; state() carries (n, generator state) through a checkpoint. Frames without a stream (streams None) draw
    from one generator seeded once from derive_seed(seed, SEED_KEY, "no-stream").
    """

    def __init__(self, num_patches: int, seed: int = 0) -> None:
        self.num_patches = num_patches
        self._streams: dict = {}  # stream -> (frames seen, its torch.Generator)
        self._loose = torch.Generator().manual_seed(derive_seed(seed, SEED_KEY, "no-stream"))

    def __call__(self, frames, streams=None, starts=None):
        streams, flags = streams_and_starts(frames, streams, starts)
        if streams is None:
            return random_scores(len(frames), self.num_patches, self._loose)
        rows = []
        for stream, start in zip(streams, flags, strict=True):
            seen, gen = self._streams.get(stream, (0, None))
            if start or gen is None:
                gen = torch.Generator().manual_seed(derive_seed(0, SEED_KEY, repr(stream), seen))
            rows.append(random_scores(1, self.num_patches, gen))
            self._streams[stream] = (seen + 1, gen)
        return torch.cat(rows) if rows else torch.zeros(0, self.num_patches)

    def state(self, stream):
        entry = self._streams.get(stream)
        return None if entry is None else (entry[0], entry[1].get_state())

    def restore(self, stream, state):
        if state is None:
            self.forget(stream)
            return
        gen = torch.Generator()
        gen.set_state(state[1])
        self._streams[stream] = (int(state[0]), gen)

    def forget(self, stream):
        self._streams.pop(stream, None)
