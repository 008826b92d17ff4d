#!/usr/bin/env bash
# The GPU measurements of issue "Scale", in steps that each fit one device call (<= 10 minutes), paper profile.
#   bash bench/gpu_session.sh micro   # env, pre-training, saliency and learner benchmarks (with the space-time
#                                       aggregators of SPEC §16 beside spirl and mae_all)
#   bash bench/gpu_session.sh mae     # Seaquest: frames, the 50-epoch MAE and mr (the real DAG jobs)
#   bash bench/gpu_session.sh spirl   # one whole SPIRL 100K run on Seaquest, split into its parts
#   bash bench/gpu_session.sh der     # one whole DE-Rainbow 100K run on Seaquest
#   bash bench/gpu_session.sh rehearsal  # every stage and variant at paper shape on a slice (conf/rehearsal.yaml)
#   bash bench/gpu_session.sh mlr     # MLR (SPEC §15): each MLR-family update's cost, then the mlr 100K run on
#                                       Seaquest for 6 minutes (its pace extrapolated to the whole run)
#   bash bench/gpu_session.sh plan    # print the commands of the mae step (no GPU needed)
# A run not done after 9 minutes is stopped and reported as unfinished, with its pace extrapolated.
# Results: bench/results/*-<tag>.json (tag = the GPU's name) and, if $OUT is set, copies there.
# On a machine without this repo's environment (a lent device with its own python3 and torch): run
# `bash bench/device_wheels.sh` here first and carry `.whl`; the packages it lacks are installed from there.
# The spirl step needs the mae step's model.npz and mr.json (carry data/full/mae/Seaquest, results/full/mr/Seaquest).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python3 ] && export PATH="$PWD/.venv/bin:$PATH"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/spirl-site \
    .whl/*.whl
  export PYTHONPATH="/tmp/spirl-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! command -v python >/dev/null; then  # the jobs' commands say `python`
  mkdir -p /tmp/spirl-bin && ln -sf "$(command -v python3)" /tmp/spirl-bin/python && export PATH="/tmp/spirl-bin:$PATH"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONHASHSEED=0
tag=$(python -c "import torch; print(torch.cuda.get_device_name(0).split()[-1].lower() if torch.cuda.is_available() else 'cpu')")
res=bench/results
game=Seaquest
model=data/full/mae/$game/model.npz
mr=results/full/mr/$game/mr.json
keep() { [ -n "${OUT:-}" ] && cp "$@" "$OUT"/ || true; }
case "${1:-}" in
  micro)
    python bench/env.py --games $game --out $res/env-$tag.json
    python bench/pretrain.py --out $res/pretrain-$tag.json
    python bench/saliency.py --game $game --out $res/saliency-$tag.json
    python bench/learner.py --game $game --seeds-per-job 5 --out $res/learner-$tag.json
    python bench/learner.py --game $game --variants spirl mae_all divst_all jointst_spirl --rounds 2 \
      --out $res/learner-spacetime-$tag.json
    keep $res/env-$tag.json $res/pretrain-$tag.json $res/saliency-$tag.json $res/learner-$tag.json \
      $res/learner-spacetime-$tag.json ;;
  plan | mae)  # the DAG's own commands for the game's frames, MAE and mr (no Snakemake needed)
    cmds=$(python -c "
from spirl.workflow import plan
from spirl.params import load_params
params = load_params(plan.param_files('full'))
for stage in (plan.COLLECT, plan.PRETRAIN_MAE, plan.ESTIMATE_MR):
    print(plan.job_for(params, stage, {'game': '$game'}).cmd)")
    if [ "$1" = plan ]; then echo "$cmds"; exit 0; fi
    while IFS= read -r cmd; do bash -c "$cmd"; done <<< "$cmds"
    cp data/full/mae/$game/run.json $res/mae-run-$game-$tag.json
    keep $res/mae-run-$game-$tag.json "$mr" "$model" ;;
  spirl | der)
    variant=$([ "$1" = spirl ] && echo spirl || echo de_rainbow)
    extra=$([ "$1" = spirl ] && echo "--model $model --mr $mr" || true)
    python bench/run.py --variant $variant --regime 100k --game $game $extra --max-seconds 540 \
      --out $res/run-$variant-full-$tag.json --keep $res/run-$variant-100k-$game-$tag
    keep $res/run-$variant-full-$tag.json $res/run-$variant-100k-$game-$tag/eval.json ;;
  rehearsal)
    python bench/rehearsal.py --out $res/rehearsal-$tag.json
    keep $res/rehearsal-$tag.json ;;
  mlr)
    python bench/mlr.py --updates 20 --out $res/mlr-$tag.json
    python bench/run.py --variant mlr --regime 100k --game $game --max-seconds 360 \
      --out $res/run-mlr-full-$tag.json --keep $res/run-mlr-100k-$game-$tag
    keep $res/mlr-$tag.json $res/run-mlr-full-$tag.json ;;
  *) echo "usage: $0 micro|mae|spirl|der|rehearsal|mlr|plan" >&2; exit 2 ;;
esac
