#!/usr/bin/env python3
"""Run the jobs of some stages of a profile now, outside the DAG, from whatever their inputs are at this moment.

`make tables-now` and `make report-now` call it. The DAG builds a table only once every run it needs exists;
this runs the table, score, figure and report jobs from the runs there are (a run that is missing or incomplete is
named as such in its cell or in the report). Each job is the plan's (spirl.workflow.plan.jobs), with the exact
command Snakemake and DVC run, in the plan's order; the first job that fails stops the rest.

    python workflow/scripts/run_stages.py --profile desk --stages table publish
    python workflow/scripts/run_stages.py --profile desk --stages aggregate table publish figures report
    python workflow/scripts/run_stages.py --profile smoke --stages table --dry-run      # print the commands only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: the jobs' paths are relative to it
sys.path.insert(0, str(ROOT / "src"))

from spirl.params import ConfigError, load_params  # noqa: E402
from spirl.workflow.plan import STAGES, Job, jobs, overlay_file, param_files  # noqa: E402


def profiles() -> list[str]:
    """The profiles there are: one conf/<profile>.yaml each."""
    return sorted(path.stem for path in (ROOT / "conf").glob("*.yaml"))


def selected_jobs(profile: str, stages: list[str]) -> list[Job]:
    """The profile's jobs of the given stages, in the plan's order (a ValueError for an unknown profile or stage)."""
    if profile not in profiles():
        raise ValueError(f"--profile {profile!r}: {overlay_file(profile)} does not exist; allowed: {profiles()}")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages {unknown}: not a stage; allowed: {list(STAGES)}")
    params = load_params([ROOT / f for f in param_files(profile)])
    chosen = [job for job in jobs(params) if job.stage.name in stages]
    if not chosen:
        raise ValueError(f"--stages {stages}: the {profile} profile plans no job of these stages")
    return chosen


def run(chosen: list[Job]) -> int:
    """Run the jobs one after another from the repository root; the exit status of the first that fails, else 0.

    Commands call plain `python`: this interpreter's folder goes first on PATH (the project's .venv under make)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for job in chosen:
        print(f"{job.name}: {job.cmd}", flush=True)
        status = subprocess.run(job.cmd, shell=True, cwd=ROOT, env=env).returncode
        if status != 0:
            print(f"run_stages.py: job {job.name} failed (exit status {status}); its log: {job.log}", file=sys.stderr)
            return status
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--profile", required=True, help="the profile (conf/<profile>.yaml over params.yaml)")
    parser.add_argument("--stages", required=True, nargs="+", metavar="STAGE",
                        help=f"the stages whose jobs run, any of: {' '.join(STAGES)}")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each job's command (run from the repository root); run nothing")
    args = parser.parse_args(argv)
    try:
        chosen = selected_jobs(args.profile, args.stages)
    except (ValueError, ConfigError) as err:
        parser.error(str(err))
    if args.dry_run:
        print("\n".join(job.cmd for job in chosen))
        return 0
    return run(chosen)


if __name__ == "__main__":
    sys.exit(main())
