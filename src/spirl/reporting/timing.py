"""Where the time goes: measured wall hours of jobs, and device hours expected from the run benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from spirl.params import Params


def total_seconds(record: Mapping) -> float | None:
    """A job's wall time over every process that made it (run.json): wall_time_total_s where recorded, the one
    process's wall_time_s for a job that was not resumed, None for a resumed job whose earlier time is unknown."""
    if "wall_time_total_s" in record:
        return record["wall_time_total_s"]
    if record.get("resumed") or record.get("resumed_after_epoch"):
        return None
    return float(record["wall_time_s"])


def stage_hours(records: Sequence[Mapping | None]) -> tuple[float, int]:
    """Sum of the jobs' wall times in hours (over every process of a resumed job), and how many jobs have a record
    (run.json) whose time is known."""
    seconds = [total_seconds(r) for r in records if r and "wall_time_s" in r]
    known = [s for s in seconds if s is not None]
    return sum(known) / 3600.0, len(known)



def bench_run_times(folder: Path, params: Params) -> dict[tuple[str, str], tuple[float, str]]:
    """(variant, regime) -> (wall seconds, device) of a whole run of this profile, from the benchmarks.

    bench/run.py results (run-*.json, a whole run measured) belong to the profile when their settings' params
    files end with conf/<profile>.yaml; bench/rehearsal.py results (rehearsal-*.json) add their extrapolated
    run hours for the profile they extrapolate to, where no measured run exists.
    """
    out = {}
    for path in sorted(Path(folder).glob("rehearsal-*.json")):
        doc = json.loads(path.read_text())
        if Path(str(doc.get("settings", {}).get("extrapolated_to", ["", ""])[-1])).stem != params.experiment.profile:
            continue
        for run in doc.get("runs", []):
            if run.get("extrapolated_total_hours") is not None:
                device = f"{run['torch_device']} ({doc.get('device', {}).get('cpu_count', '?')} cores), rehearsal"
                out[(run["variant"], run["regime"])] = (3600.0 * run["extrapolated_total_hours"], device)
    for path in sorted(Path(folder).glob("run-*.json")):
        doc = json.loads(path.read_text())
        settings = doc.get("settings", {})
        overlay = Path(str(settings.get("params", ["", ""])[-1])).stem
        if overlay != params.experiment.profile or "wall_time_s" not in doc:
            continue
        device = doc.get("device", {})
        name = device.get("gpu") or f"{device.get('torch_device', 'cpu')} ({device.get('cpu_count', '?')} cores)"
        out[(settings["variant"], settings["regime"])] = (float(doc["wall_time_s"]), str(name))
    return out


def estimate_hours(runs: Sequence[Mapping[str, str]], bench: Mapping[tuple[str, str], tuple[float, str]],
                   params: Params) -> dict:
    """Expected device hours of `runs`: each run costs the benchmark of its variant, or of its base method,
    at the same regime; runs with neither are counted as unmatched.

    Returns:
        {"runs": n, "matched": m, "hours": sum over matched runs, "devices": the benchmarks' devices}.
    """
    variants = params.experiment.variants
    by_base = {}
    for (variant, regime), value in bench.items():
        if variant in variants:
            by_base.setdefault((variants[variant].base, regime), value)
    seconds, matched, devices = 0.0, 0, set()
    for run in runs:
        hit = bench.get((run["variant"], run["regime"])) or by_base.get((variants[run["variant"]].base, run["regime"]))
        if hit:
            seconds, matched = seconds + hit[0], matched + 1
            devices.add(hit[1])
    return {"runs": len(runs), "matched": matched, "hours": seconds / 3600.0, "devices": ", ".join(sorted(devices))}
