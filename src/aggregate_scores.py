"""The tidy score tables of a profile from its runs: scores.csv (per episode) and runs.csv (per run).

PYTHONHASHSEED=0 python src/aggregate_scores.py --params params.yaml conf/full.yaml \
    --in-eval RUN/eval.json ... --in-run RUN/run.json ... --out-scores results/full/scores.csv \
    --out-runs results/full/runs.csv
The runs are those of spirl.workflow.plan.training_runs(params), in that order; a missing or incomplete run
is kept in runs.csv with the reason (SPEC §10).
"""

from __future__ import annotations

from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.plots import write_csv
from spirl.params import ConfigError, load_params
from spirl.reporting.scores import RUN_FIELDS, episode_rows, load_run, run_rows
from spirl.workflow.plan import training_runs


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--in-eval", nargs="+", type=Path, required=True)
    parser.add_argument("--in-run", nargs="+", type=Path, required=True)
    parser.add_argument("--out-scores", type=Path, required=True)
    parser.add_argument("--out-runs", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("aggregate_scores", args.log)
    params = load_params(args.params)
    runs = training_runs(params)
    if not len(runs) == len(args.in_eval) == len(args.in_run):
        raise ConfigError(f"--in-eval/--in-run give {len(args.in_eval)}/{len(args.in_run)} files but the tables "
                          f"of profile {params.experiment.profile!r} need {len(runs)} runs")
    results = [load_run([run[f] for f in RUN_FIELDS], e, r, params)
               for run, e, r in zip(runs, args.in_eval, args.in_run, strict=True)]
    episodes = episode_rows(results)
    write_csv(episodes or [dict.fromkeys([*RUN_FIELDS, "env_step", "episode", "return"], "")], args.out_scores)
    write_csv(run_rows(results), args.out_runs)
    bad = [r for r in results if not r.complete]
    log.info("%d runs, %d complete, %d episodes%s", len(results), len(results) - len(bad), len(episodes),
             "".join(f"\n  {r.key}: {r.status}: {r.reason}" for r in bad))


if __name__ == "__main__":
    main()
