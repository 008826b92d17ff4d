"""Fingerprinted resume checkpoints of the offline training stages (the MAE's pre-training, Wu's mask).

A checkpoint carries the identity of its run: a hash of the stage's parameter section, its seeds and the exact
frames file. A checkpoint of another run (other parameters, seeds or frames) is never mixed in: it is reported as
"stale" and training starts afresh. Runs expose state_dict() / load_state_dict(state).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from spirl.common.io import atomic_path
from spirl.params import to_plain


class Resumable(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def fingerprint(section: str, values: Any, seeds: Mapping[str, int], frames_path: Path) -> str:
    """Identity of a run: its parameter section (named `section` in the hash), its seeds and the frames (sha256)."""
    digest = hashlib.sha256(Path(frames_path).read_bytes()).hexdigest()
    blob = json.dumps({section: to_plain(values), "seeds": dict(seeds), "frames_sha256": digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def save_checkpoint(run: Resumable, path: Path, run_id: str) -> None:
    """Write the run's state and identity atomically (a kill mid-write keeps the previous checkpoint)."""
    with atomic_path(Path(path)) as tmp:
        torch.save({"fingerprint": run_id, **run.state_dict()}, tmp)


def load_checkpoint(run: Resumable, path: Path, run_id: str) -> str:
    """Restore the run from `path` if it holds the same run; returns "resumed", "absent" or "stale"."""
    if not Path(path).is_file():
        return "absent"
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != run_id:
        return "stale"
    run.load_state_dict(state)
    return "resumed"
