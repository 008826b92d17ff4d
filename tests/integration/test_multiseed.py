"""Several seeds in one process (runtime.seeds_per_job): the same actions, losses, evaluations and weights as running
the seeds one by one, to float tolerance, over the first few hundred updates; and an uneven resume catches up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_learning import SIZE, CueEnv, cue_embeddings

from spirl.agents.agent import frame_spec
from spirl.agents.represent import make_represent
from spirl.params import REPO_ROOT, load_params, replace, resolve_variant
from spirl.training.loop import run_training
from spirl.training.representation import StatelessRepresentation
from spirl.training.run import RunKey, TrainingRun

STEPS, LEARN_START, SEEDS = 340, 40, (0, 1)  # 300 updates per seed


class RecordingCueEnv(CueEnv):
    """CueEnv that keeps every action it is given."""

    def __init__(self, seed: int, mode: str) -> None:
        super().__init__(seed, mode)
        self.actions: list[int] = []

    def step(self, action: int):
        self.actions.append(int(action))
        return super().step(action)

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "t": self.t, "cue": self.cue, "frame": self.frame.copy()}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.t, self.cue, self.frame = state["t"], state["cue"], state["frame"].copy()


def setup(variant: str, steps: int = STEPS, eval_checkpoint_every_s: float = 600.0):
    params = resolve_variant(load_params([REPO_ROOT / "params.yaml"]), variant)
    if variant == "spirl":
        # Exact equality of every action needs no greedy argmax within float rounding over the 340 steps. At the
        # default priority 1 this tiny SPIRL pair meets one: seed 1's losses agree to ~1e-7 up to env step 192,
        # drift by 7e-6 at 200 and its actions part at step 222 (measured 2026-12-08; not yet traced to the op).
        # SPIRL keeps max priority here, where these steps meet none; DE-Rainbow runs at the default.
        params = replace(params, replay=replace(params.replay, new_priority="max"))
    train = replace(
        params.train, multi_step=3, lr=1e-3, learn_start_env_steps=LEARN_START, target_update_updates=50,
        batch_size=8, eval_checkpoint_every_s=eval_checkpoint_every_s,
        regimes={"100k": replace(params.train.regimes["100k"], total_env_steps=steps,
                                 replay_capacity_transitions=steps, eval_every_env_steps=steps // 2)})
    params = replace(params, train=train, eval=replace(params.eval, n_envs=2),
                     atari=replace(params.atari, frame_size_px=SIZE),
                     runtime=replace(params.runtime, compile_learner=False))
    base = params.experiment.variants[variant].base
    spec = frame_spec(base, params.agent, 4, 64, SIZE, params.replay.embedding_dtype)
    represent = StatelessRepresentation(lambda f: cue_embeddings(f, 4)) if base == "spirl" else \
        make_represent(spec, params, None, 0, None)

    def make(seed: int) -> TrainingRun:
        return TrainingRun(RunKey(variant, "100k", "Cue", seed), params, spec, represent, torch.device("cpu"),
                           env_factory=RecordingCueEnv)
    return make


def outcome(run: TrainingRun) -> dict:
    return {"actions": run.env.actions, "progress": run.state.progress, "evals": run.state.evals,
            "updates": run.agent.updates, "weights": {k: v.clone() for k, v in run.agent.online.state_dict().items()},
            "adam": run.agent.optimizer.state_dict()["state"]}


def assert_close(a: dict, b: dict) -> None:
    assert a["updates"] == b["updates"] == STEPS - LEARN_START
    assert a["actions"] == b["actions"]  # every action of the run, the greedy ones included
    assert [p["return_raw"] for p in a["progress"]] == [p["return_raw"] for p in b["progress"]]
    np.testing.assert_allclose([p["loss_mean"] for p in a["progress"]], [p["loss_mean"] for p in b["progress"]],
                               rtol=1e-4, atol=1e-6)
    assert [(e["env_step"], e["returns"]) for e in a["evals"]] == [(e["env_step"], e["returns"]) for e in b["evals"]]
    for name, value in a["weights"].items():
        torch.testing.assert_close(value, b["weights"][name], rtol=1e-4, atol=1e-5)
    for index, entry in a["adam"].items():
        for name, value in entry.items():
            torch.testing.assert_close(value, b["adam"][index][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["spirl", "de_rainbow"])
def test_seeds_together_match_seeds_one_by_one(variant):
    make = setup(variant)
    alone = []
    for seed in SEEDS:
        run = make(seed)
        run_training([run], checkpoints=None, checkpoint_every=10**9, log=lambda message: None)
        alone.append(outcome(run))
    group = [make(seed) for seed in SEEDS]
    run_training(group, checkpoints=None, checkpoint_every=10**9, log=lambda message: None)
    for run, reference in zip(group, alone, strict=True):
        assert_close(outcome(run), reference)
    # the seeds really differ (each has its own envs, noise and initialisation)
    assert alone[0]["actions"] != alone[1]["actions"]


class Stop(Exception):
    pass


def test_uneven_resume_catches_up_and_matches(tmp_path):
    """A crash between two of a group's checkpoint writes: seed 1 resumes 100 steps behind seed 0 and catches up."""
    make = setup("spirl")
    paths = [tmp_path / f"seed{seed}.pt" for seed in SEEDS[:2]]
    for seed, stop_at in ((0, 200), (1, 100)):
        run = make(seed)

        def stop(run=run, stop_at=stop_at):
            if run.state.env_step == stop_at:
                raise Stop

        with pytest.raises(Stop):
            run_training([run], checkpoints=[paths[seed]], checkpoint_every=100, on_step=stop, log=lambda m: None)
    group = [make(seed) for seed in SEEDS[:2]]
    assert [run.load(path) for run, path in zip(group, paths, strict=True)] == [True, True]
    assert [run.state.env_step for run in group] == [200, 100]
    run_training(group, checkpoints=paths, checkpoint_every=100, log=lambda message: None)
    for seed, run in zip(SEEDS[:2], group, strict=True):
        reference = make(seed)
        run_training([reference], checkpoints=None, checkpoint_every=10**9, log=lambda message: None)
        got, want = outcome(run), outcome(reference)
        got["actions"] = want["actions"][: len(want["actions"]) - len(got["actions"])] + got["actions"]
        assert_close(got, want)


def test_a_group_rejects_runs_that_cannot_train_together():
    make_spirl, make_der = setup("spirl"), setup("de_rainbow")
    with pytest.raises(ValueError, match="cannot train together"):
        run_training([make_spirl(0), make_der(1)], checkpoints=None, checkpoint_every=10**9)
    with pytest.raises(ValueError, match="seeds must differ"):
        run_training([make_spirl(0), make_spirl(0)], checkpoints=None, checkpoint_every=10**9)
    with pytest.raises(ValueError, match="checkpoint paths"):
        run_training([make_spirl(0), make_spirl(1)], checkpoints=[REPO_ROOT / "x.pt"], checkpoint_every=10)


def test_a_crash_during_an_evaluation_resumes_inside_it(tmp_path, monkeypatch):
    """The checkpoint is written before an evaluation and, with train.eval_checkpoint_every_s = 0, after each of
    its lock-step iterations; a crash in the final evaluation resumes at that iteration (not a checkpoint interval
    back), and the evaluation's returns are those of an uninterrupted run."""
    make = setup("spirl", eval_checkpoint_every_s=0.0)
    reference = make(0)
    run_training([reference], checkpoints=None, checkpoint_every=10**9, log=lambda message: None)
    path, save, crashed = tmp_path / "seed0.pt", TrainingRun.save, []

    def save_then_crash(run: TrainingRun, where: Path) -> None:
        save(run, where)
        progress = run.state.eval_progress
        if run.state.env_step == STEPS and progress is not None and progress["steps"] == 5:
            crashed.append(progress)
            raise Stop

    monkeypatch.setattr(TrainingRun, "save", save_then_crash)
    with pytest.raises(Stop):
        run_training([make(0)], checkpoints=[path], checkpoint_every=100, log=lambda message: None)
    monkeypatch.undo()
    resumed = make(0)
    assert resumed.load(path) and resumed.state.env_step == STEPS
    assert resumed.state.eval_progress["steps"] == 5 and resumed.state.eval_progress["env_step"] == STEPS
    assert [p["env_step"] for p in resumed.state.evals] == [STEPS // 2]
    run_training([resumed], checkpoints=[path], checkpoint_every=100, log=lambda message: None)
    assert resumed.state.evals == reference.state.evals and resumed.state.eval_progress is None
    assert len(resumed.env.actions) == 0  # no training step was replayed
    finished = make(0)
    assert finished.load(path) and finished.state.evals == reference.state.evals  # the last checkpoint has it all
    assert finished.state.eval_progress is None
    # a resume of a finished run evaluates nothing again
    run_training([finished], checkpoints=[path], checkpoint_every=100, log=lambda message: None)
    assert finished.state.evals == reference.state.evals
