"""Provenance for every output directory's run.json: config, seeds, commit, versions, device, time."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spirl.common.io import write_json
from spirl.params import REPO_ROOT

# Libraries whose version is recorded when the job has imported them.
_TRACKED = ("numpy", "torch", "ale_py", "cv2", "gymnasium", "pandas", "matplotlib", "yaml")


def git_commit() -> str | None:
    """The repository's HEAD commit, with '-dirty' if tracked files changed; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Python and the versions of the tracked libraries this process has imported."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED:
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def device_info() -> dict[str, Any]:
    """The machine: platform, CPU count, and the GPU if torch is loaded and sees one."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())  # the GPU this job claimed
    return info


def peak_memory_mb() -> dict[str, float]:
    """Peak resident host memory of this process and the peak GPU memory torch allocated, in MiB (the GPU entry
    only where torch is loaded and sees CUDA)."""
    import resource

    out = {"host": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: ru_maxrss in KiB
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["gpu"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def provenance() -> dict[str, Any]:
    """Where and with what a result was made: device, library versions, UTC time, git commit."""
    return {"device": device_info(), "versions": library_versions(), "git_commit": git_commit(),
            "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def emit_bench(payload: Mapping[str, Any], out: Path | None) -> None:
    """A benchmark's result with its provenance: one JSON line on stdout, and the file `out` if given."""
    record = {**payload, **provenance()}
    record["device"] = {**record["device"], "processor": platform.processor() or platform.machine(),
                        **payload.get("device", {})}
    print(json.dumps(record))
    if out is not None:
        write_json(out, record)


def run_record(*, stage: str, params: Mapping[str, Any], wildcards: Mapping[str, Any],
               seeds: Mapping[str, int], wall_time_s: float, extra: Mapping[str, Any] | None = None) -> dict:
    """The run.json content of one job."""
    record = {
        "stage": stage,
        "wildcards": dict(wildcards),
        "seeds": dict(seeds),
        "params": dict(params),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device_info(),
        "command": [sys.executable, *sys.argv],
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "peak_memory_mb": peak_memory_mb(),
    }
    record.update(extra or {})
    return record
