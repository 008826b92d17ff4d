"""Where and how torch runs, from the `runtime` section: device, threads, precision.

On a machine with several visible GPUs every torch job claims one of them for its whole life: an
exclusive `flock` on `<lock dir>/gpu-<i>.lock` (the first free i wins), then `torch.cuda.set_device(i)`.
Jobs started by Snakemake with `--resources gpu=N` therefore spread over the N GPUs, one each. The
lock dir is `$SPIRL_GPU_LOCK_DIR` if set, else `<tmp>/spirl-gpu-locks`; the kernel drops a lock when its
process exits, also on a crash or SIGKILL, so a stale file never blocks a GPU. When every GPU is
claimed, a job waits (logging every minute) until one is released: more jobs than GPUs (two Snakemake
runs at once, or `gpu=N` above the GPU count) queue instead of failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO

import torch

from spirl.params import ConfigError, RuntimeParams

LOG = logging.getLogger(__name__)
LOCK_DIR_ENV = "SPIRL_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "spirl-gpu-locks"
WAIT_LOG_EVERY_S = 60.0

# (index, open lock file) of the GPU this process claimed: the lock lives as long as the file stays open
_claimed: tuple[int, IO[bytes]] | None = None


def gpu_lock_dir() -> Path:
    """The directory of the per-GPU lock files: $SPIRL_GPU_LOCK_DIR, else <tmp>/spirl-gpu-locks."""
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def _make_lock_dir(lock_dir: Path) -> None:
    """Create the lock dir; the shared default one world-writable with the sticky bit, like /tmp, for every user."""
    try:
        lock_dir.mkdir(parents=True)
    except FileExistsError:
        return
    if lock_dir == DEFAULT_LOCK_DIR:
        with contextlib.suppress(OSError):
            lock_dir.chmod(0o1777)


def _open_lock_file(path: Path) -> IO[bytes]:
    """Open a lock file read-only (enough for flock, so another user's file works too), creating it if missing."""
    try:  # O_CREAT only when needed: Linux refuses it on another user's file in a sticky dir (fs.protected_regular)
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    return os.fdopen(fd, "rb")


def try_claim(n_slots: int, lock_dir: Path) -> tuple[int, IO[bytes]] | None:
    """One non-blocking pass over slots 0..n_slots-1; returns (index, open locked file) or None if all busy."""
    _make_lock_dir(lock_dir)
    for index in range(n_slots):
        handle = _open_lock_file(lock_dir / f"gpu-{index}.lock")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return index, handle
    return None


def claim_slot(n_slots: int, lock_dir: Path, timeout_s: float | None = None, poll_s: float = 2.0,
               log: logging.Logger = LOG) -> tuple[int, IO[bytes]]:
    """Claim the first free slot of n_slots with an exclusive flock on `lock_dir/gpu-<i>.lock`.

    Args:
        n_slots: how many slots (GPUs) there are, >= 1.
        lock_dir: where the lock files live (created if missing).
        timeout_s: give up after this many seconds of waiting (None: wait as long as it takes).
        poll_s: seconds between attempts while every slot is taken.
        log: gets a line when the wait starts and every WAIT_LOG_EVERY_S seconds after.
    Returns:
        (index, handle): the slot and its open lock file; the slot is held until the handle is closed or
        the process exits.
    Raises:
        TimeoutError: every slot stayed taken for timeout_s seconds.
    """
    if n_slots < 1:
        raise ValueError(f"n_slots must be >= 1, got {n_slots}")
    start, next_log = time.monotonic(), 0.0
    while (claimed := try_claim(n_slots, lock_dir)) is None:
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(f"all {n_slots} GPUs stayed claimed for {waited:.1f} s (lock files in {lock_dir})")
        if waited >= next_log:
            log.warning("all %d GPUs are claimed by other jobs (lock files in %s); waiting for one (%.0f s so far)",
                        n_slots, lock_dir, waited)
            next_log = waited + WAIT_LOG_EVERY_S
        time.sleep(poll_s if timeout_s is None else min(poll_s, timeout_s - waited))
    return claimed


def _claim_gpu(log: logging.Logger) -> torch.device:
    """Hold one of the visible GPUs for the rest of this process and make it the current CUDA device."""
    global _claimed
    count = torch.cuda.device_count()
    if count <= 1:
        return torch.device("cuda")
    if _claimed is None:
        _claimed = claim_slot(count, gpu_lock_dir(), log=log)
        log.info("claimed GPU %d of %d visible (lock %s)", _claimed[0], count, _claimed[1].name)
    torch.cuda.set_device(_claimed[0])
    return torch.device(f"cuda:{_claimed[0]}")


def setup_torch(runtime: RuntimeParams, log: logging.Logger = LOG) -> torch.device:
    """Set the thread count and return the device (runtime.device: auto | cpu | cuda).

    With several visible GPUs the process claims one of them (see the module docstring) and the device
    is `cuda:<i>`; with one GPU it is `cuda`, on CPU `cpu`. Call it before any other CUDA work; `log`
    gets the claimed GPU and, while every GPU is taken, a waiting line every minute.
    """
    torch.set_num_threads(runtime.torch_threads)
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device = 'cuda' but no CUDA device is visible; allowed here: auto, cpu")
    if runtime.device == "cpu" or (runtime.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return _claim_gpu(log)


def autocast_dtype(runtime: RuntimeParams, device: torch.device, purpose: str) -> torch.dtype | None:
    """The autocast dtype of one kind of work on `device`, or None (plain fp32).

    Args:
        purpose: "pretrain" (runtime.pretrain_precision, bf16 by default, taken on a GPU only: MAE pre-training on a
            CPU is always fp32) or "saliency" (error maps, selection and embeddings: runtime.saliency_precision,
            fp32 by default as in the released code; bf16 only where the parameter asks for it, on any device: a
            CPU with AVX-512 bf16 runs the MAE's error maps about 1.5 times faster, issue 28).
    """
    choices = {"pretrain": runtime.pretrain_precision, "saliency": runtime.saliency_precision}
    if purpose not in choices:
        raise ValueError(f"purpose must be one of {sorted(choices)}, got {purpose!r}")
    if choices[purpose] == "bf16" and (device.type == "cuda" or purpose == "saliency"):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on `n` torch threads, then restore the process's count (a no-op when it already is n).

    runtime.saliency_threads: a SPIRL run's per-frame representation (scoring, selection, embedding) may use more
    threads than its learner and acting (runtime.torch_threads), e.g. both cores of a machine the run has alone.
    """
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
