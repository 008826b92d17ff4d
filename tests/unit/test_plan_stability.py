"""The job plan and the parameter values that decide re-runs, against a committed snapshot.

tests/data/plan-2cdb4be.json holds, for every profile, each job's command, inputs, outputs and params sections, and
the canonical JSON of its parameter values that Snakemake compares to decide a re-run (both as sha256 prefixes),
as they were before the code moved into subpackages. A refactoring must leave them all equal. A deliberate change
of a parameter or a path changes some of them: regenerate the file with
`python tests/unit/test_plan_stability.py` and say in the commit which jobs changed and why.
"""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from spirl.params import REPO_ROOT, load_params, replace
from spirl.workflow import plan as P
from spirl.workflow import snakemake as S

SNAPSHOT = REPO_ROOT / "tests" / "data" / "plan-2cdb4be.json"
PROFILES = ("smoke", "desk", "rehearsal", "full")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_rows(profile: str) -> list[list[str]]:
    """[name, sha of command/inputs/outputs/sections, sha of the params values] of each job, sorted by name."""
    params = load_params([REPO_ROOT / f for f in P.param_files(profile)])
    rows = []
    for job in P.jobs(params):
        core = {"cmd": job.cmd, "inputs": job.inputs, "outputs": job.outputs, "sections": job.sections}
        values = S.section_values(params, job.stage, dict(job.wildcards))
        rows.append([job.name, _sha(json.dumps(core, sort_keys=True)), _sha(values)])
    return sorted(rows)


@pytest.mark.parametrize("profile", PROFILES)
def test_jobs_commands_outputs_and_parameter_hashes_are_unchanged(profile):
    expected = {name: rest for name, *rest in json.loads(SNAPSHOT.read_text())["profiles"][profile]}
    got = {name: rest for name, *rest in plan_rows(profile)}
    assert sorted(got) == sorted(expected), "jobs added or removed"
    assert [n for n in got if got[n][0] != expected[n][0]] == [], "command, inputs, outputs or sections changed"
    assert [n for n in got if got[n][1] != expected[n][1]] == [], "parameter values (Snakemake's re-run key) changed"


def test_the_hash_sees_a_changed_parameter():
    """A job whose parameter value changes gets another values hash (the comparison above can fail)."""
    params = load_params([REPO_ROOT / f for f in P.param_files("smoke")])
    job = next(j for j in P.jobs(params) if j.stage is P.COLLECT)
    before = S.section_values(params, job.stage, dict(job.wildcards))
    changed = replace(params, collect=replace(params.collect, seed=params.collect.seed + 1))
    assert _sha(S.section_values(changed, job.stage, dict(job.wildcards))) != _sha(before)


if __name__ == "__main__":  # regenerate the snapshot after a deliberate change
    data = json.loads(SNAPSHOT.read_text())
    data["profiles"] = {p: plan_rows(p) for p in PROFILES}
    lines = ["{", f' "about": {json.dumps(data["about"])},', ' "profiles": {']
    for i, (p, rows) in enumerate(data["profiles"].items()):
        lines += [f'  "{p}": [', *("   " + json.dumps(r) + ("," if k < len(rows) - 1 else "")
                                   for k, r in enumerate(rows)), "  ]" + ("," if i < len(PROFILES) - 1 else "")]
    SNAPSHOT.write_text("\n".join([*lines, " }", "}"]) + "\n")
    sys.exit(0)
