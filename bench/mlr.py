"""Benchmark: what an update of each MLR-family variant costs (SPEC §15), beside the plain DE-Rainbow learner.

Per variant at its paper settings (params.yaml, 18 actions): the parameters (Q-network, decoder, action embedding,
q), the floating-point operations of one update (matmuls and convolutions, torch's FlopCounterMode, as
`bench/learner.py --flops-only` counts them), eager updates per second on replay-shaped synthetic batches (windows
included), the peak resident memory of a process that builds the agent and runs the updates (each variant in its
own subprocess, so one's peak is not another's), and the updates of a 100K run (updates_per_learn per learning step
from learn_start to 100K env steps). From the FLOPs, the hours of a run's updates on an H100/H200 at stated attained
rates (a projection, not a measurement: the GPU recipe, bench/gpu_session.sh mlr, measures it).

    python bench/mlr.py --out bench/results/mlr-cpu.json
    python bench/mlr.py --variant mlr --updates 3     # one variant, in this process (what each subprocess runs)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spirl.agents.agent import Agent, build_qnetwork, frame_spec
from spirl.agents.mlr.branch import MLRBranch
from spirl.common.nn import parameter_count
from spirl.common.runinfo import emit_bench
from spirl.params import load_params, resolve_variant

VARIANTS = ("de_rainbow", "der_mlr", "mlr_base", "mlr")
DEFAULT_UPDATES = {"mlr": 3, "der_mlr": 10}  # timed updates: mlr's is about a TFLOP (seconds each on a CPU core)
N_ACTIONS = 18
# Attained fp32-class rates for the projection (TFLOP/s): an H100 SXM's dense TF32 tensor peak is 494.7 and its
# plain fp32 peak 66.9 (NVIDIA's datasheet; the H200 has the same GH100 compute). A learner of batch 32 reaches a
# fraction of either; the two rates bracket what a run may see.
ATTAINED_TFLOPS = {"tf32 at 30% of peak": 0.3 * 494.7, "fp32 at 50% of peak": 0.5 * 66.9}


def build_agent(params, variant: str, device: torch.device) -> tuple[Agent, dict]:
    """The variant's agent as a training run builds it, and a replay-shaped synthetic batch (windows if MLR)."""
    p = resolve_variant(params, variant)
    spec = frame_spec("de_rainbow", p.agent, 0, 0, p.atari.frame_size_px, p.replay.embedding_dtype)
    net = build_qnetwork(spec, p.agent, N_ACTIONS, p.atari.frame_stack, torch.Generator().manual_seed(0))
    mlr = MLRBranch(net, p.mlr, N_ACTIONS, 1, torch.Generator().manual_seed(2)) if p.mlr.loss else None
    augment = torch.Generator().manual_seed(3) if p.train.augment != "none" else None
    agent = Agent(net, p.agent, p.train, device, torch.Generator().manual_seed(4), mlr=mlr,
                  mlr_weight=p.mlr.weight, augment_generator=augment)
    rng, b, f = np.random.default_rng(0), p.train.batch_size, p.atari.frame_stack
    batch = {"obs": rng.integers(0, 256, (b, f, 84, 84), dtype=np.uint8),
             "next_obs": rng.integers(0, 256, (b, f, 84, 84), dtype=np.uint8),
             "actions": rng.integers(0, N_ACTIONS, b), "returns": rng.uniform(-1, 1, b).astype(np.float32),
             "discounts": np.full(b, p.train.discount ** p.train.multi_step, np.float32),
             "weights": np.ones(b, np.float32)}
    if mlr is not None:
        t = p.mlr.window
        batch |= {"window_obs": rng.integers(0, 256, (b, t, f, 84, 84), dtype=np.uint8),
                  "window_actions": rng.integers(0, N_ACTIONS, (b, t)), "window_alive": np.ones((b, t), bool)}
    return agent, batch


def one_variant(params, variant: str, updates: int) -> dict:
    """Parameters, FLOPs, updates/s and peak memory of one variant (run in its own process)."""
    from torch.utils.flop_counter import FlopCounterMode

    p = resolve_variant(params, variant)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    agent, batch = build_agent(params, variant, device)
    branch = agent.mlr
    counts = {"q_network": parameter_count(agent.online)}
    if branch is not None:
        counts |= {"decoder_blocks": parameter_count(branch.decoder.blocks),
                   "action_embedding": parameter_count(branch.decoder.action_embed),
                   "predictor_q": parameter_count(branch.predictor)}
    agent.learn(batch)  # warm-up (allocations, Adam state)
    with FlopCounterMode(display=False) as counter:
        agent.learn(batch)
    gflop = counter.get_total_flops() / 1e9
    sync()
    start = time.perf_counter()
    for _ in range(updates):
        agent.learn(batch)
    sync()
    seconds = (time.perf_counter() - start) / updates
    learn_steps = p.train.regimes["100k"].total_env_steps - p.train.learn_start_env_steps
    run_updates = learn_steps // p.train.regimes["100k"].env_steps_per_update * p.train.updates_per_learn
    return {"variant": variant, "parameters": counts, "parameters_total": sum(counts.values()),
            "d_latent": agent.online.encoder.output_size, "batch": p.train.batch_size,
            "window": p.mlr.window if branch is not None else 0, "gflop_per_update": gflop,
            "seconds_per_update": seconds, "updates_per_s": 1.0 / seconds, "gflop_per_s": gflop / seconds,
            "timed_updates": updates, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
            "updates_per_100k_run": run_updates,
            "cpu_hours_per_100k_run_updates": run_updates * seconds / 3600,
            "projected_gpu_hours_per_100k_run_updates": {name: run_updates * gflop / (rate * 1e3) / 3600
                                                         for name, rate in ATTAINED_TFLOPS.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--variant", default=None, help="measure this one variant here and print its JSON")
    parser.add_argument("--updates", type=int, default=None, help="timed updates (default: DEFAULT_UPDATES, else 20)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.torch_threads)
    if args.variant is not None:
        updates = args.updates or DEFAULT_UPDATES.get(args.variant, 20)
        print(json.dumps(one_variant(params, args.variant, updates)))
        return 0
    load = [os.getloadavg()[0]]
    results = []
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--params", *map(str, args.params), "--variant", variant,
               *(["--updates", str(args.updates)] if args.updates else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    load.append(os.getloadavg()[0])
    emit_bench({"bench": "mlr", "settings": {"params": [str(p) for p in args.params], "actions": N_ACTIONS,
                                             "torch_threads": params.runtime.torch_threads,
                                             "load_average_1min_before_after": load,
                                             "attained_tflops_for_projection": ATTAINED_TFLOPS},
                "results": results,
                "device": {"torch_device": "cuda" if torch.cuda.is_available() else "cpu"}}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
