"""Benchmark: learner updates/s and acting actions/s of the pixel (DE-Rainbow) and SPIRL agents.

Paper sizes from params.yaml (batch 32, 18 actions; SPIRL K_max of the given game's adopted mr), on
synthetic batches (the replay is not timed here: see bench/run.py for whole runs). Each variant is timed eager
and compiled (runtime.compile_learner; its compile time reported); with --baseline-rev the same benchmark of an
earlier commit's learner runs in the same invocation, in interleaved rounds (medians reported), so before and
after are measured side by side. Each result also counts an update's floating-point operations (matmuls and
convolutions, torch's FlopCounterMode), so a rate reads as GFLOP/s.

    python bench/learner.py --baseline-rev cd763cf --out bench/results/learner-<device>.json
    python bench/learner.py --flops-only --out bench/results/learner-flops-<device>.json  # counts, and a GEMM's GFLOP/s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spirl.agents.agent import Agent, build_qnetwork, frame_spec
from spirl.agents.multiseed import StackedAgents
from spirl.common.nn import parameter_count
from spirl.common.runinfo import emit_bench
from spirl.params import load_params, resolve_variant
from spirl.saliency.selection import k_max_from_ratio


def synthetic_batch(spec, batch: int, stack: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A replay-shaped batch of random frames (embeddings or pixels)."""
    shape = (batch, stack, *spec.shape)
    if spec.kind == "embeddings":
        obs = rng.standard_normal(shape).astype(spec.dtype)
        nxt = rng.standard_normal(shape).astype(spec.dtype)
    else:
        obs, nxt = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    return {"obs": obs, "next_obs": nxt, "actions": rng.integers(0, 18, batch),
            "returns": rng.uniform(-1, 1, batch).astype(np.float32),
            "discounts": np.full(batch, 0.99**20, np.float32), "weights": np.ones(batch, np.float32)}


def rate(fn, seconds: float, device: torch.device) -> float:
    """Calls of fn per second (one warm-up call, then at least `seconds`)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def baseline(rev: str, variants: list[str], game: str, seconds: float) -> dict:
    """This benchmark at commit `rev` (its src/ and bench/learner.py, eager, one seed), in a subprocess."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        paths = ["src", "bench/learner.py", "params.yaml"]
        if subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{rev}:workflow/schemas"],
                          stderr=subprocess.DEVNULL).returncode == 0:
            paths.append("workflow/schemas")  # the JSON schema an older loader reads (before the pydantic model)
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, *paths], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        out = Path(tmp) / "out.json"
        env = {**os.environ, "PYTHONPATH": f"{tmp}/src"}
        subprocess.run([sys.executable, f"{tmp}/bench/learner.py", "--variants", *variants, "--game", game,
                        "--seconds", str(seconds), "--params", f"{tmp}/params.yaml", "--out", str(out)],
                       check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        record = json.loads(out.read_text())
    return {"rev": rev, "results": {r["variant"]: r["updates_per_s"] for r in record["results"]}}


def profile_learn(agent: Agent, batch: dict, updates: int = 20, top: int = 12) -> dict:
    """Where an (eager) update's time goes: the operators with the most self time, in ms per update and share."""
    from torch.profiler import ProfilerActivity, profile

    agent.learn(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(updates):
            agent.learn(batch)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    return {"updates": updates, "ms_per_update": total / 1e3 / updates,
            "top_ops": [{"op": e.key, "ms_per_update": e.self_cpu_time_total / 1e3 / updates,
                         "share": e.self_cpu_time_total / total, "calls_per_update": e.count / updates}
                        for e in ops[:top]]}


def flops_of(fn) -> dict:
    """Floating-point operations of one call of fn (matmuls and convolutions; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    by_op = {str(op): n / 1e9 for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"gflop": counter.get_total_flops() / 1e9, "gflop_by_op": by_op}


def gemm_gflops(size: int, device: torch.device, seconds: float) -> float:
    """GFLOP/s of a square fp32 matrix product of `size` (an attainable-arithmetic reference for this device)."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    return 2 * size**3 * rate(lambda: a @ b, seconds, device) / 1e9


class VariantBench:
    """One variant's agents at paper sizes: the eager and the compiled learner, timed again each round."""

    def __init__(self, params, variant: str, game: str, device: torch.device, seconds: float) -> None:
        p = resolve_variant(params, variant)
        base = p.experiment.variants[variant].base
        k_max = 144 if p.saliency.selection == "all" else k_max_from_ratio(144, p.saliency.paper_mr[game])
        self.p, self.variant, self.device, self.seconds = p, variant, device, seconds
        self.spec = frame_spec(base, p.agent, k_max, p.mae.encoder_dim, p.atari.frame_size_px,
                               p.replay.embedding_dtype)
        self.agent, self.compiled = (
            Agent(self.net(0), p.agent, p.train, device, torch.Generator().manual_seed(1), compile=compile)
            for compile in (False, True))
        self.rng = np.random.default_rng(0)
        self.batch = synthetic_batch(self.spec, p.train.batch_size, p.atari.frame_stack, self.rng)
        self.rounds: list[dict[str, float]] = []

    def net(self, seed: int):
        generator = torch.Generator().manual_seed(seed)
        return build_qnetwork(self.spec, self.p.agent, 18, self.p.atari.frame_stack, generator)

    def flops(self) -> dict:
        """An update's and an action's floating-point operations (eager; the compiled graph does the same products)."""
        self.agent.learn(self.batch)
        one = torch.as_tensor(synthetic_batch(self.spec, 1, self.p.atari.frame_stack, self.rng)["obs"],
                              device=self.device)
        return {"variant": self.variant, "update": flops_of(lambda: self.agent.learn(self.batch)),
                "action": flops_of(lambda: self.agent.act(one))}

    def measure(self) -> None:
        self.rounds.append({"eager": rate(lambda: self.agent.learn(self.batch), self.seconds, self.device),
                            "compiled": rate(lambda: self.compiled.learn(self.batch), self.seconds, self.device)})

    def result(self, seeds: int) -> dict:
        """updates/s (batch 32; median over the rounds) and actions/s (batch 1); with seeds > 1 also the stacked
        learner of that many seeds in one process (spirl.agents.multiseed), one update of every seed counted as one."""
        p, spec, device, seconds = self.p, self.spec, self.device, self.seconds
        one = torch.as_tensor(synthetic_batch(spec, 1, p.atari.frame_stack, self.rng)["obs"], device=device)
        out = {"variant": self.variant, "frame": spec.kind, "frame_shape": list(spec.shape),
               "parameters": parameter_count(self.agent.online), "batch": p.train.batch_size,
               "updates_per_s": float(np.median([r["eager"] for r in self.rounds])),
               "actions_per_s": rate(lambda: self.agent.act(one), seconds, device),
               "compiled": {"updates_per_s": float(np.median([r["compiled"] for r in self.rounds])),
                            "compile_s": self.compiled.compile_seconds},
               "rounds": self.rounds, "gflop_per_update": flops_of(lambda: self.agent.learn(self.batch))["gflop"]}
        if device.type == "cpu":
            out["profile"] = profile_learn(self.agent, self.batch)
        if seeds > 1:
            agents = [Agent(self.net(s), p.agent, p.train, device, torch.Generator().manual_seed(100 + s))
                      for s in range(seeds)]
            stacked = StackedAgents(agents)
            batches = [synthetic_batch(spec, p.train.batch_size, p.atari.frame_stack, self.rng) for _ in range(seeds)]
            stacks = np.stack([synthetic_batch(spec, 1, p.atari.frame_stack, self.rng)["obs"] for _ in range(seeds)])
            out["stacked"] = {"seeds": seeds, "updates_per_s": rate(lambda: stacked.learn(batches), seconds, device),
                              "actions_per_s": rate(lambda: stacked.act(stacks), seconds, device)}
            out["stacked"]["seed_updates_per_s"] = seeds * out["stacked"]["updates_per_s"]
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    parser.add_argument("--variants", nargs="+", default=["de_rainbow", "spirl"])
    parser.add_argument("--game", default="Seaquest", help="whose adopted mr sets SPIRL's K_max")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seeds-per-job", type=int, default=1, help="also time this many seeds stacked")
    parser.add_argument("--baseline-rev", default=None, help="also time this commit's learner first (git rev)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (medians reported)")
    parser.add_argument("--flops-only", action="store_true",
                        help="only count each update's operations and time a square fp32 GEMM (--gemm-size)")
    parser.add_argument("--gemm-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(params.runtime.torch_threads)
    benches = [VariantBench(params, v, args.game, device, args.seconds) for v in args.variants]
    if args.flops_only:
        emit_bench({"bench": "learner-flops", "settings": {"game": args.game, "gemm_size": args.gemm_size,
                                                          "seconds_per_rate": args.seconds,
                                                          "load_average_1min": os.getloadavg()[0]},
                    "results": [bench.flops() for bench in benches],
                    "gemm_gflops": gemm_gflops(args.gemm_size, device, args.seconds),
                    "device": {"torch_device": str(device), "torch_threads": torch.get_num_threads()}}, args.out)
        return 0
    before: list[dict] = []
    for _ in range(args.rounds):  # interleaved rounds, so a change in the machine's load hits both sides
        if args.baseline_rev:
            before.append(baseline(args.baseline_rev, args.variants, args.game, args.seconds)["results"])
        for bench in benches:
            bench.measure()
    results = [bench.result(args.seeds_per_job) for bench in benches]
    for r in results if before else ():
        old = float(np.median([b[r["variant"]] for b in before]))
        r["baseline_updates_per_s"], r["baseline_rounds"] = old, [b[r["variant"]] for b in before]
        r["speedup_eager"] = r["updates_per_s"] / old
        r["speedup_compiled"] = r["compiled"]["updates_per_s"] / old
    emit_bench({"bench": "learner", "settings": {"game": args.game, "graph": "eager and compiled",
                                                 "baseline_rev": args.baseline_rev, "rounds": args.rounds,
                                                 "seconds_per_rate": args.seconds,
                                                 "seeds_per_job": args.seeds_per_job}, "results": results,
                "device": {"torch_device": str(device), "torch_threads": torch.get_num_threads()}}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
