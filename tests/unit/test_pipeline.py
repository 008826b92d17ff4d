"""The shared job plan: commands, per-run inputs, params keys, GPU tokens."""

from __future__ import annotations

import ast
from dataclasses import replace as replace_spec

import pytest
import torch

from spirl.params import REPO_ROOT, load_params, replace
from spirl.saliency import registry
from spirl.workflow import plan as P
from spirl.workflow import snakemake as S

ROOT = REPO_ROOT


def params(profile: str = "full"):
    return load_params([REPO_ROOT / f for f in P.param_files(profile)])


def test_collect_command_is_exactly_the_documented_line():
    job = P.Job(P.COLLECT, "smoke", {"game": "Frostbite"})
    assert job.cmd == ("PYTHONHASHSEED=0 python src/collect_frames.py --params params.yaml conf/smoke.yaml "
                       "--game Frostbite --out-frames data/smoke/frames/Frostbite/frames.npz "
                       "--out-run data/smoke/frames/Frostbite/run.json --log work/smoke/logs/collect/Frostbite.log")
    assert job.name == "collect-Frostbite"


def test_training_runs_read_only_what_their_variant_needs():
    p = params()
    assert P.train_input_names(p, "spirl") == ("model", "mr")
    assert P.train_input_names(p, "de_rainbow") == ()
    assert P.train_input_names(p, "de_rainbow_p") == ("frames",)
    job = P.Job(P.TRAIN, "full", {"variant": "de_rainbow_p", "regime": "100k", "game": "Seaquest", "seed": "3"},
                input_names=("frames",))
    assert job.inputs == {"frames": ["data/full/frames/Seaquest/frames.npz"]}
    assert "--in-frames data/full/frames/Seaquest/frames.npz" in job.cmd and "--in-model" not in job.cmd
    assert job.sections[-1] == "experiment.variants.de_rainbow_p"
    assert job.name == "train-de_rainbow_p-100k-Seaquest-3"


def test_table14_runs_only_on_seaquest_and_runs_are_unique():
    runs = P.training_runs(params())
    keys = [tuple(r.values()) for r in runs]
    # the paper's 330 + the criteria table's 3 scorers + the MLR table's mlr, mlr_base, der_mlr + the space-time
    # table's divst_all, jointst_spirl (4 games, 5 seeds each)
    assert len(keys) == len(set(keys)) == 330 + 3 * 4 * 5 + 3 * 4 * 5 + 2 * 4 * 5
    assert {r["game"] for r in runs if r["variant"] in ("divst_all", "jointst_spirl")} == {
        "Frostbite", "MsPacman", "Seaquest", "BattleZone"}
    assert {(r["variant"], r["regime"]) for r in runs if "mlr" in r["variant"]} == {
        ("mlr", "100k"), ("mlr_base", "100k"), ("der_mlr", "100k")}
    assert {r["game"] for r in runs if r["variant"] == "spirl_pad_masked"} == {"Seaquest"}


def test_scorer_variants_read_their_scorers_mr_and_the_wu_mask():
    """SPEC §13: a scorer variant reads its own scorer's mr estimate (and, for wu_mask, the game's Wu mask), the
    paper's SPIRL the MAE's; each (game, scorer) mr estimate and each Wu mask is planned exactly once."""
    p = params()
    wu = P.train_job(p, {"variant": "spirl_wu", "regime": "100k", "game": "Seaquest", "seed": "2"})
    assert wu.inputs == {"model": ["data/full/mae/Seaquest/model.npz"],
                         "mr": ["results/full/mr/Seaquest/wu_mask/mr.json"], "wu": ["data/full/wu/Seaquest/model.npz"]}
    fd = P.train_job(p, {"variant": "spirl_framediff", "regime": "100k", "game": "MsPacman", "seed": "0"})
    assert fd.inputs["mr"] == ["results/full/mr/MsPacman/frame_diff/mr.json"] and "wu" not in fd.inputs
    assert P.train_job(p, {"variant": "spirl", "regime": "100k", "game": "MsPacman", "seed": "0"}).inputs["mr"] == [
        "results/full/mr/MsPacman/mr.json"]
    names = [j.name for j in P.jobs(p)]
    assert len(names) == len(set(names))
    assert sorted(n for n in names if n.startswith("estimate_mr_scorer-Frostbite")) == [
        f"estimate_mr_scorer-Frostbite-{s}" for s in ("frame_diff", "mae_untrained", "random", "wu_mask")]
    assert [n for n in names if n.startswith(("pretrain_wu", "objects", "saliency_quality"))] == [
        *(f"pretrain_wu-{g}" for g in p.experiment.games), *(f"objects-{g}" for g in p.experiment.games),
        *(f"saliency_quality-{g}" for g in p.experiment.games)]
    outputs = [path for j in P.jobs(p) for path in j.outputs.values()]
    assert len(outputs) == len(set(outputs))  # no two jobs write one file
    mr = P.job_for(p, P.ESTIMATE_MR_SCORER, {"game": "Seaquest", "scorer": "wu_mask"})
    assert "--scorer wu_mask" in mr.cmd and "--in-wu data/full/wu/Seaquest/model.npz" in mr.cmd
    assert "--in-wu" not in P.job_for(p, P.ESTIMATE_MR_SCORER, {"game": "Seaquest", "scorer": "random"}).cmd
    assert P.job_for(p, P.OBJECTS, {"game": "Seaquest"}).cmd.startswith(
        "PYTHONHASHSEED=0 .venv-objects/bin/python src/collect_objects.py")


def test_a_profile_without_the_criteria_table_plans_none_of_its_stages():
    p = params()
    p = replace(p, experiment=replace(p.experiment, build_tables=("table2",)))
    stages = {j.stage.name for j in P.jobs(p)}
    assert stages.isdisjoint({"pretrain_wu", "estimate_mr_scorer", "objects", "saliency_quality", "quality_table"})
    assert "quality-md" not in P.report_job(p).inputs


def test_gpu_tokens_follow_the_runtime_device():
    p = params()
    assert S.gpu_tokens(replace(p, runtime=replace(p.runtime, device="cpu"))) == 0
    assert S.gpu_tokens(replace(p, runtime=replace(p.runtime, device="cuda"))) == 1
    assert S.gpu_tokens(p) == int(torch.cuda.is_available())  # device: auto


def test_desk_profile_plans_exactly_its_slice_of_the_paper():
    p = params("desk")
    names = [job.name for job in P.jobs(p)]
    games = ["Frostbite", "MsPacman", "Seaquest", "BattleZone"]
    criteria = [f"estimate_mr_scorer-Frostbite-{s}" for s in ("mae_untrained", "frame_diff", "random", "wu_mask")]
    assert names == [*(f"collect-{g}" for g in games), "pretrain_mae-Frostbite", "estimate_mr-Frostbite",
                     "saliency_figures-Frostbite", "pretrain_wu-Frostbite", *criteria, "objects-Frostbite",
                     "saliency_quality-Frostbite", "fig8", "quality_table",
                     "train-spirl-100k-Frostbite-0", *(f"train-mae_all-100k-Frostbite-{s}" for s in (0, 1)),
                     *(f"train-{v}-100k-{g}-{s}" for v in ("de_rainbow", "de_rainbow_p") for g in games
                       for s in (0, 1)),
                     *(f"train-{v}-100k-Frostbite-{s}" for v in ("spirl_framediff", "spirl_wu", "spirl_random",
                                                                  "divst_all", "jointst_random") for s in (0, 1)),
                     "aggregate",
                     *(f"{stage}-{t}" for stage in ("table", "publish") for t in ("table1", "table2", "table11",
                                                                                  "criteria", "table_st")),
                     "figures", "fig6-Frostbite",
                     *(f"agent_saliency-{v}-100k-Frostbite-0" for v in (
                         "spirl", "mae_all", "de_rainbow", "de_rainbow_p", "spirl_framediff", "spirl_wu",
                         "spirl_random", "divst_all", "jointst_random")),
                     "agent_saliency_table", "report"]
    # the paper's settings: nothing of the method or agent differs from params.yaml but the profile's scope (and
    # how often a run is checkpointed)
    full = params("full")
    for section in ("atari", "collect", "mae", "saliency", "wu", "criteria", "agent", "replay", "mlr", "eval",
                    "runtime"):
        assert getattr(p, section) == getattr(full, section), section
    assert p.train == replace(full.train, checkpoint_every_env_steps=2000)
    report = P.report_job(p)
    assert report.inputs["mae-run"] == ["data/desk/mae/Frostbite/run.json"]
    assert report.inputs["mr"] == ["results/desk/mr/Frostbite/mr.json"]
    assert len(report.inputs["collect-run"]) == 4 and "fig6" in report.inputs  # from the SPIRL Frostbite run
    assert P.job_for(p, P.FIG8, {}).inputs == {"mr": ["results/desk/mr/Frostbite/mr.json"]}


def test_a_profile_without_mae_games_has_no_mae_jobs():
    p = replace(params("desk"), experiment=replace(params("desk").experiment, saliency_games=("Pong",)))
    stages = {job.stage.name for job in P.jobs(p)}
    assert not stages & {"pretrain_mae", "estimate_mr", "saliency_figures", "fig8"}
    assert not set(P.report_job(p).inputs) & {"mae-run", "mae-loss", "mr", "fig2", "fig3", "fig8", "fig6"}


def test_a_table_run_may_name_a_subset_of_the_games():
    """experiment.tables.X.runs[i].games: that run only on those games (desk: SPIRL on Frostbite alone)."""
    p = params("desk")
    runs = [tuple(r.values()) for r in P.table_runs(p, "table2")]
    games = ("Frostbite", "MsPacman", "Seaquest", "BattleZone")
    assert runs == [(v, "100k", g, s) for v in ("de_rainbow", "de_rainbow_p") for g in games for s in "01"] + [
        ("spirl", "100k", "Frostbite", "0")]


def test_snakemake_config_in_another_key_order_plans_the_jobs_order_of_the_scripts():
    """Snakemake merges a conf/ overlay's keys first (an overlay's experiment.tables entry comes before params.yaml's
    tables); the plan must still list a gathering job's inputs in the order its script reads its runs."""
    from spirl.params import read_params

    raw = read_params([ROOT / f for f in P.param_files("desk")])
    tables = raw["experiment"]["tables"]
    reordered = {**raw, "experiment": {**raw["experiment"],
                                       "tables": {k: tables[k] for k in ("criteria", *tables) if k in tables}}}
    assert list(reordered["experiment"]["tables"]) != list(tables)  # the order Snakemake would hand over
    planned = S.check_snakemake_config(reordered, ROOT)
    scripts = params("desk")
    assert list(planned.experiment.tables) == list(scripts.experiment.tables)
    assert P.training_runs(planned) == P.training_runs(scripts)
    assert P.report_job(planned).inputs == P.report_job(scripts).inputs


def _calls_setup_torch(script: str) -> bool:
    """Whether a stage script calls spirl.common.runtime.setup_torch (threads, and the GPU it claims)."""
    tree = ast.parse((ROOT / script).read_text())
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) ==
               "setup_torch" for node in ast.walk(tree))


def test_torch_stages_are_exactly_those_whose_scripts_set_up_torch():
    """Stage.torch gives a rule runtime.torch_threads and a GPU token: it must name every script that runs torch."""
    torch_stages = {name for name, stage in P.STAGES.items() if stage.torch}
    assert torch_stages == {name for name, stage in P.STAGES.items() if _calls_setup_torch(stage.script)}
    assert torch_stages == {"pretrain_mae", "estimate_mr", "saliency_figures", "pretrain_wu", "estimate_mr_scorer",
                            "saliency_quality", "train", "fig6", "agent_saliency"}


def test_the_plan_takes_each_scorers_needs_from_the_registry(monkeypatch):
    """Which mr estimate a scorer reads and whether it reads the Wu mask come from spirl.saliency.registry: a scorer
    declared to score with the Wu mask gets it in its mr job, its runs and the games whose masks are trained."""
    p = params("desk")
    assert P.OTHER_SCORERS == tuple(name for name in registry.SPECS if name != registry.PAPER)
    assert P.scorer_mr_template(registry.PAPER) == P.ESTIMATE_MR.outputs["mr"]
    for name in P.OTHER_SCORERS:
        assert P.scorer_mr_template(name) == f"results/{{profile}}/mr/{{game}}/{name}/mr.json"
    assert "wu" not in P.scorer_mr_job(p, "Frostbite", "frame_diff").inputs
    assert P.train_input_names(p, "spirl_framediff") == ("model", "mr")

    frame_diff, wu_mask = registry.SPECS["frame_diff"], registry.SPECS["wu_mask"]
    monkeypatch.setitem(registry.SPECS, "frame_diff", replace_spec(frame_diff, scores_with="wu"))
    assert P.scorer_mr_job(p, "Frostbite", "frame_diff").inputs["wu"] == ["data/desk/wu/Frostbite/model.npz"]
    assert P.train_input_names(p, "spirl_framediff") == ("model", "mr", "wu")
    compares_frame_diff = replace(p, criteria=replace(p.criteria, scorers=("mae_surround", "frame_diff")))
    assert "wu" in P.quality_job(compares_frame_diff, "Frostbite").inputs

    monkeypatch.setitem(registry.SPECS, "frame_diff", frame_diff)
    monkeypatch.setitem(registry.SPECS, "wu_mask", replace_spec(wu_mask, scores_with=None))  # no scorer reads Wu's
    assert P.wu_games(p) == [] and "pretrain_wu" not in {job.stage.name for job in P.jobs(p)}
    assert "wu" not in P.scorer_mr_job(p, "Frostbite", "wu_mask").inputs
    assert P.train_input_names(p, "spirl_wu") == ("model", "mr")
    assert "wu" not in P.quality_job(p, "Frostbite").inputs
    with pytest.raises(ValueError, match=r"saliency.scorer must be one of .*, got 'sobel'"):
        P.scorer_mr_template("sobel")


def test_agent_saliency_probes_seed_0_of_the_named_variants_on_the_criteria_games():
    from spirl.params import ConfigError, check_consistency

    p = params("desk")
    assert {r["variant"] for r in P.agent_saliency_runs(p)} == {
        "spirl", "mae_all", "de_rainbow", "de_rainbow_p", "spirl_framediff", "spirl_wu", "spirl_random", "divst_all",
        "jointst_random"}
    assert {(r["game"], r["seed"]) for r in P.agent_saliency_runs(p)} == {("Frostbite", "0")}
    narrow = replace(p, agent_saliency=replace(p.agent_saliency, variants=("spirl", "de_rainbow")))
    assert [r["variant"] for r in P.agent_saliency_runs(narrow)] == ["spirl", "de_rainbow"]
    job = P.agent_saliency_job(narrow, P.agent_saliency_runs(narrow)[0])
    assert job.inputs["mr"] == ["results/desk/mr/Frostbite/mr.json"] and "wu" not in job.inputs
    assert job.inputs["weights"] == ["results/desk/runs/spirl/100k/Frostbite/0/weights.npz"]
    pixels = P.agent_saliency_job(narrow, P.agent_saliency_runs(narrow)[1])
    assert set(pixels.inputs) == {"weights", "run", "frames", "objects"}
    with pytest.raises(ConfigError, match="agent_saliency.variants has 'nope'"):
        check_consistency(replace(p, agent_saliency=replace(p.agent_saliency, variants=("nope",))))
