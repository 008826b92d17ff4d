"""spirl.common.runtime: one GPU slot per process through flock, and setup_torch on a CPU-only machine."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import torch

from spirl.common import runtime as R
from spirl.params import ConfigError, RuntimeParams, replace

CPU = RuntimeParams(device="cpu", torch_threads=1, saliency_threads=1, pretrain_precision="bf16",
                    saliency_precision="fp32",
                    saliency_memory_mb=4096, seeds_per_job=1, compile_learner=False)

FORK = multiprocessing.get_context("fork")  # the child has torch and spirl loaded already: no import cost


def _hold(n_slots: int, lock_dir, conn) -> None:
    """In a child process: claim a slot, report it, and hold it until the parent says to stop."""
    index, _handle = R.claim_slot(n_slots, lock_dir, timeout_s=5.0)
    conn.send(index)
    conn.recv()


def _holder(n_slots: int, lock_dir) -> tuple[tuple, int]:
    ours, theirs = FORK.Pipe()
    proc = FORK.Process(target=_hold, args=(n_slots, lock_dir, theirs), daemon=True)
    proc.start()
    assert ours.poll(10), "the holder process did not claim a slot"
    return (proc, ours), ours.recv()


def _release(holder: tuple) -> None:
    proc, conn = holder
    conn.send("stop")  # the process exits and the kernel drops its lock
    proc.join(timeout=10)
    assert proc.exitcode == 0


def test_processes_get_distinct_slots_and_a_released_slot_is_reused(tmp_path):
    first, a = _holder(3, tmp_path)
    second, b = _holder(3, tmp_path)
    assert (a, b) == (0, 1)
    _release(first)
    third, c = _holder(3, tmp_path)
    assert c == 0
    index, handle = R.claim_slot(3, tmp_path, timeout_s=0)
    assert index == 2
    handle.close()
    _release(second)
    _release(third)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-0.lock", "gpu-1.lock", "gpu-2.lock"]


def test_two_opens_in_one_process_conflict_like_two_processes(tmp_path):
    """flock belongs to the open file description, so a second open in the same process is refused too."""
    a, ha = R.claim_slot(2, tmp_path, timeout_s=0)
    b, hb = R.claim_slot(2, tmp_path, timeout_s=0)
    assert (a, b) == (0, 1)
    assert R.try_claim(2, tmp_path) is None
    hb.close()
    assert R.claim_slot(2, tmp_path, timeout_s=0)[0] == 1
    ha.close()


def test_all_slots_busy_times_out_with_a_clear_error(tmp_path, caplog):
    holder, _ = _holder(1, tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"all 1 GPUs stayed claimed for .* s \(lock files in "):
            R.claim_slot(1, tmp_path, timeout_s=0.3, poll_s=0.05)
        assert 0.3 <= time.monotonic() - start < 3
        assert "all 1 GPUs are claimed by other jobs" in caplog.text
    finally:
        _release(holder)


def test_a_waiting_claim_gets_the_slot_once_it_is_released(tmp_path):
    index, handle = R.claim_slot(1, tmp_path)
    threading.Timer(0.3, handle.close).start()
    start = time.monotonic()
    index, handle = R.claim_slot(1, tmp_path, poll_s=0.05)  # no timeout: waits as long as it takes
    assert index == 0 and time.monotonic() - start >= 0.25
    handle.close()


def test_claim_slot_rejects_no_slots(tmp_path):
    with pytest.raises(ValueError, match="n_slots"):
        R.claim_slot(0, tmp_path)


def test_lock_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(R.LOCK_DIR_ENV, str(tmp_path / "locks"))
    assert R.gpu_lock_dir() == tmp_path / "locks"
    monkeypatch.delenv(R.LOCK_DIR_ENV)
    assert R.gpu_lock_dir() == R.DEFAULT_LOCK_DIR


def test_setup_torch_on_cpu_sets_threads_and_claims_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(R.LOCK_DIR_ENV, str(tmp_path))
    before = torch.get_num_threads()
    try:
        assert R.setup_torch(replace(CPU, torch_threads=2)) == torch.device("cpu")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert not any(tmp_path.iterdir())
    cpu = torch.device("cpu")
    assert R.autocast_dtype(CPU, cpu, "pretrain") is None  # pre-training on a CPU: fp32 even though bf16 is set
    assert R.autocast_dtype(CPU, cpu, "saliency") is None  # the selection: fp32 unless asked
    bf16 = replace(CPU, saliency_precision="bf16")
    assert R.autocast_dtype(bf16, cpu, "saliency") == torch.bfloat16  # asked for: taken on a CPU too
    assert R.autocast_dtype(bf16, cpu, "pretrain") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_setup_torch_without_cuda(monkeypatch, tmp_path):
    monkeypatch.setenv(R.LOCK_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match="runtime.device = 'cuda'"):
        R.setup_torch(replace(CPU, device="cuda"))
    assert R.setup_torch(replace(CPU, device="auto")) == torch.device("cpu")


def test_setup_torch_claims_one_of_several_gpus(monkeypatch, tmp_path):
    """With 3 visible GPUs (faked), two processes' worth of claims get cuda:0 and cuda:1."""
    monkeypatch.setenv(R.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(R, "_claimed", None)
    holder, index = _holder(3, tmp_path)
    try:
        device = R.setup_torch(replace(CPU, device="cuda"))
        assert (index, device, chosen) == (0, torch.device("cuda:1"), [1])
        assert R.setup_torch(replace(CPU, device="auto")) == torch.device("cuda:1")  # kept, not re-claimed
        assert R.autocast_dtype(CPU, device, "pretrain") == torch.bfloat16
        assert R.autocast_dtype(CPU, device, "saliency") is None  # selection in fp32 unless asked
        bf16 = replace(CPU, saliency_precision="bf16")
        assert R.autocast_dtype(bf16, device, "saliency") == torch.bfloat16
        with pytest.raises(ValueError, match="purpose"):
            R.autocast_dtype(CPU, device, "eval")
    finally:
        if R._claimed is not None:
            R._claimed[1].close()
        _release(holder)
    monkeypatch.setattr(R, "_claimed", None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert R.setup_torch(replace(CPU, device="cuda")) == torch.device("cuda")  # one GPU: unchanged
    assert R._claimed is None


def test_committed_defaults_select_in_fp32_and_pretrain_in_bf16_on_a_gpu():
    from spirl.params import REPO_ROOT, load_params

    runtime = load_params([REPO_ROOT / "params.yaml"]).runtime
    gpu = torch.device("cuda", 0)  # autocast_dtype only reads the device type
    assert runtime.saliency_precision == "fp32"
    assert R.autocast_dtype(runtime, gpu, "saliency") is None
    assert R.autocast_dtype(runtime, torch.device("cpu"), "saliency") is None
    assert R.autocast_dtype(runtime, gpu, "pretrain") == torch.bfloat16


def test_torch_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with R.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), R.torch_threads(before + 1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an error too
    with R.torch_threads(before):
        assert torch.get_num_threads() == before
