"""Strict configuration: the parameter model (pydantic) rejects unknown, missing, mistyped and out-of-range keys,
naming the key path, the value given and what is allowed; the cross-section rules; variants; replace."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

import spirl.params as C
from spirl.params import ConfigError

ROOT = C.REPO_ROOT


@pytest.fixture(scope="module")
def raw() -> dict:
    return C.read_yaml(ROOT / "params.yaml")


def test_committed_params_load_and_round_trip(raw):
    params = C.load_params([ROOT / "params.yaml"])
    assert C.to_plain(params) == raw
    assert params.experiment.profile == "full"
    assert params.experiment.games == ("Frostbite", "MsPacman", "Seaquest", "BattleZone")
    # a few paper numbers, so a slip in params.yaml is caught (Tab. 4-6, 9, 10, B.5)
    assert dict(params.collect.frames_per_game) == {"Frostbite": 5000, "MsPacman": 50000, "Seaquest": 50000,
                                                    "BattleZone": 50000}
    assert params.atari.max_episode_agent_steps * params.atari.frame_skip == 108_000
    assert params.mae.base_lr * params.mae.batch_size / 256 == pytest.approx(2.5e-4)
    assert params.train.multi_step == 20 and params.train.learn_start_env_steps == 1600
    k_max = {g: 144 * round(r * 100) // 100 for g, r in params.saliency.paper_mr.items()}
    assert k_max == {"Frostbite": 50, "MsPacman": 43, "Seaquest": 28, "BattleZone": 43}  # released code
    assert params.experiment.variants["de_rainbow"].n_seeds == 10


def test_full_profile_is_exactly_params_yaml(raw):
    merged = C.read_params([ROOT / "params.yaml", ROOT / "conf" / "full.yaml"])
    assert merged == raw


def test_smoke_profile_is_small():
    params = C.load_params([ROOT / "params.yaml", ROOT / "conf" / "smoke.yaml"])
    assert params.experiment.profile == "smoke"
    assert len(params.experiment.games) <= 2
    assert {v.n_seeds for v in params.experiment.variants.values()} == {1}
    assert max(params.collect.frames_per_game[g] for g in params.experiment.games) <= 1000
    assert all(r.total_env_steps <= 2000 for r in params.train.regimes.values())


def test_params_are_frozen():
    params = C.load_params([ROOT / "params.yaml"])
    with pytest.raises(ValidationError, match="Instance is frozen") as err:
        params.agent.pool = "mean"  # type: ignore[misc]
    assert [e["type"] for e in err.value.errors()] == ["frozen_instance"]
    assert params.agent.pool == "cls"
    with pytest.raises(TypeError):
        params.collect.frames_per_game["Frostbite"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        params.experiment.games.append("Pong")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):  # a variant's free-form overrides are frozen all the way down
        params.experiment.variants["spirl_mr50_mean"].overrides["agent"]["pool"] = "cls"  # type: ignore[index]
    assert params.experiment.variants["spirl_mr50_mean"].overrides["agent"]["pool"] == "mean"
    assert hash(params.agent) == hash(C.load_params([ROOT / "params.yaml"]).agent)  # equal sections, equal hashes
    assert C.load_params([ROOT / "params.yaml"]) == params


# --- bad values: each names the key path, the value given and what is allowed ---------------------------------------


def _set(raw: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[leaf] = value
    return out


def _delete(raw: dict, dotted: str) -> dict:
    out = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node[key]
    del node[leaf]
    return out


BAD_CASES = {
    # kind: (mutate, words the message must contain)
    "unknown": (lambda r: _set(r, "agent.poool", "cls"), ["agent", "poool"]),
    "missing": (lambda r: _delete(r, "train.discount"), ["train", "discount"]),
    "mistyped": (lambda r: _set(r, "agent.hidden_size", "256"), ["agent.hidden_size", "'256'"]),
    "bad_enum": (lambda r: _set(r, "agent.pool", "max"), ["agent.pool", "'max'", "cls", "mean"]),
    "yaml_float_pitfall": (lambda r: _set(r, "train.lr", "1e-4"), ["train.lr", "'1e-4'"]),
    "bool_for_int": (lambda r: _set(r, "eval.n_envs", True), ["eval.n_envs", "True"]),
    "unknown_section": (lambda r: {**r, "extra": {}}, ["extra"]),
    # ranges and patterns (a JSON schema held them before the model did)
    "below_range": (lambda r: _set(r, "experiment.variants.spirl.n_seeds", 0),
                    ["variants.spirl.n_seeds", "0", ">= 1"]),
    "game_pattern": (lambda r: _set(r, "collect.frames_per_game", {"frostbite": 5}),
                     ["frames_per_game", "'frostbite'"]),
    "repeated": (lambda r: _set(r, "experiment.games", ["Seaquest", "Seaquest"]), ["experiment.games", "repeated"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_models_reject(raw, kind):
    mutate, words = BAD_CASES[kind]
    with pytest.raises(ConfigError) as err:
        C.params_from_dict(mutate(raw))
    message = str(err.value)
    for word in words:
        assert word in message, message


def test_messages_say_what_is_allowed(raw):
    with pytest.raises(ConfigError, match=r"missing key train\.discount: expected a number"):
        C.params_from_dict(_delete(raw, "train.discount"))
    with pytest.raises(ConfigError, match=r"allowed keys in agent: token_dim, heads"):
        C.params_from_dict(_set(raw, "agent.poool", "cls"))
    with pytest.raises(ConfigError, match=r"expected an integer"):
        C.params_from_dict(_set(raw, "agent.hidden_size", "256"))
    with pytest.raises(ConfigError, match=r"exactly 2"):
        C.params_from_dict(_set(raw, "mae.adam_betas", [0.9]))


@pytest.mark.parametrize(("dotted", "value", "message"), [
    ("agent.heads", True, "agent.heads = True (bool) is not allowed: expected an integer >= 1"),
    ("report.seed", 1.0, "report.seed = 1.0 (float) is not allowed: expected an integer >= 0"),
    ("atari.fire_on_reset", 1, "atari.fire_on_reset = 1 (int) is not allowed: expected true or false"),
    ("train.lr", False, "train.lr = False (bool) is not allowed: expected a number > 0"),
    ("eval.epsilon", "0.01", "eval.epsilon = '0.01' (str) is not allowed: expected a number >= 0 and <= 1"),
])
def test_strict_types_no_bool_for_a_number_no_string_for_a_number(raw, dotted, value, message):
    with pytest.raises(ConfigError) as err:
        C.params_from_dict(_set(raw, dotted, value))
    assert str(err.value) == f"params: {message}"


def test_an_int_is_accepted_for_a_number_and_stored_as_a_float(raw):
    params = C.params_from_dict(_set(raw, "train.lr", 1))
    assert params.train.lr == 1.0 and type(params.train.lr) is float
    assert C.to_plain(params)["train"]["lr"] == 1.0 and type(C.to_plain(params)["train"]["lr"]) is float
    assert type(C.params_from_dict(_set(raw, "saliency.mr", 1)).saliency.mr) is float  # 'paper'... or a ratio


def test_an_unknown_nested_key_is_named_by_its_path(raw):
    with pytest.raises(ConfigError) as err:
        C.params_from_dict(_set(raw, "train.regimes.100k.metrics", "final_mean"))
    assert str(err.value) == (
        "params: unknown key train.regimes.100k.metrics (value 'final_mean'); allowed keys in train.regimes.100k: "
        "total_env_steps, env_steps_per_update, replay_capacity_transitions, eval_every_env_steps, metric")
    with pytest.raises(ConfigError,
                       match=r"^params: unknown key experiment\.tables\.table1\.runs\[0\]\.seed \(value 3\)"):
        C.params_from_dict(_set(raw, "experiment.tables.table1.runs", [{"variant": "spirl", "regime": "100k",
                                                                         "seed": 3}]))


def test_the_error_text_of_a_nested_bad_value(raw):
    cases = [  # (key path, bad value, message)
        ("train.regimes.100k.metric", "mean",
         "train.regimes.100k.metric = 'mean' (str) is not allowed: expected one of 'final_mean', 'best_median'"),
        ("agent.cnn_channels", [32, 0, 64], "agent.cnn_channels[1] = 0 (int) is not allowed: expected an integer >= 1"),
        ("mae.adam_betas", [0.9, 1.0],
         "mae.adam_betas[1] = 1.0 (float) is not allowed: expected a number >= 0 and < 1"),
        ("mae.adam_betas", [0.9, 0.9, 0.9], "mae.adam_betas = [0.9, 0.9, 0.9] has 3 items: expected exactly 2"),
        ("saliency.mr", 1.5,
         "saliency.mr = 1.5 (float) is not allowed: expected one of 'paper', 'paper_star', 'auto' or a number > 0 "
         "and <= 1"),
        ("experiment.tables.table1.games", ["Frostbite", 3],
         "experiment.tables.table1.games = ['Frostbite', 3] (list) is not allowed: expected one of 'all' or a list, "
         "each item a string matching '^[A-Z][A-Za-z0-9]*$' (non-empty, no repeated items)"),
        ("experiment.games", ["Seaquest", "Pong", "Seaquest"],
         "experiment.games = ['Seaquest', 'Pong', 'Seaquest'] (list) is not allowed (repeated items 'Seaquest'): "
         "expected a list, each item a string matching '^[A-Z][A-Za-z0-9]*$' (non-empty, no repeated items)"),
        ("train.regimes.100", {},
         "train.regimes has the key '100', which is not allowed: expected a string matching '^[0-9]+k$'"),
        ("criteria.dynamic_categories.Frostbite", ["Player", ""],
         "criteria.dynamic_categories.Frostbite[1] = '' (str) is not allowed: expected a string (non-empty)"),
        ("experiment.tables.table1.runs", [{"variant": "spirl"}],
         "missing key experiment.tables.table1.runs[0].regime: expected a string"),
        ("experiment.variants.spirl.overrides", {"agent": 5},
         "experiment.variants.spirl.overrides.agent = 5 (int) is not allowed: expected a mapping of a string to any "
         "value"),
        ("wu", [1],
         "wu = [1] (list) is not allowed: expected a mapping with keys delta, mask_weight, max_gap, lr, batch_size, "
         "pair_samples, max_grad_norm, micro_batch, plateau, seed, checkpoint_every_updates"),
    ]
    for dotted, value, message in cases:
        with pytest.raises(ConfigError) as err:
            C.params_from_dict(_set(raw, dotted, value))
        assert str(err.value) == f"params: {message}", dotted
    with pytest.raises(ConfigError, match=r"^params: \(top level\) = 5 \(int\) is not allowed: expected a mapping "
                                          r"with keys experiment, atari,"):
        C.params_from_dict(5)  # type: ignore[arg-type]


def test_cross_references_are_checked(raw):
    bad_table = _set(raw, "experiment.tables.table1.runs", [{"variant": "spirl_typo", "regime": "100k"}])
    with pytest.raises(ConfigError, match=r"table1\.runs\[0\]\.variant = 'spirl_typo'; allowed: spirl, mae_all"):
        C.params_from_dict(bad_table)
    bad_regime = _set(raw, "experiment.tables.table1.runs", [{"variant": "spirl", "regime": "200k"}])
    with pytest.raises(ConfigError, match=r"regime = '200k'; allowed: 100k, 400k"):
        C.params_from_dict(bad_regime)
    no_frames = _set(raw, "collect.frames_per_game", {"Frostbite": 5})
    with pytest.raises(ConfigError, match=r"missing key collect\.frames_per_game\.MsPacman"):
        C.params_from_dict(no_frames)
    bad_table_game = _set(raw, "experiment.tables.table14.games", ["Pong"])
    with pytest.raises(ConfigError, match=r"table14\.games has 'Pong'"):
        C.params_from_dict(bad_table_game)
    with pytest.raises(ConfigError, match=r"build_tables has 'table9'; allowed: table1, table2"):
        C.params_from_dict(_set(raw, "experiment.build_tables", ["table2", "table9"]))
    with pytest.raises(ConfigError, match=r"saliency_games has 'Pong'; allowed: Frostbite"):
        C.params_from_dict(_set(raw, "experiment.saliency_games", ["Pong"]))
    # a SPIRL-base run needs its game's MAE: table1 trains spirl on every game
    no_mae = _set(raw, "experiment.saliency_games", ["Frostbite"])
    with pytest.raises(ConfigError, match=r"tables\.table1 trains 'spirl' .* no MAE for \['BattleZone', 'MsPacman'"):
        C.params_from_dict(no_mae)
    only_der = _set(_set(no_mae, "experiment.build_tables", ["table11"]), "experiment.tables.table11.games", "all")
    assert C.params_from_dict(only_der).experiment.built_tables == ("table11",)
    # a run limited to some games (runs[i].games): they must be the table's, and only they need an MAE
    one_game = _set(no_mae, "experiment.tables.table1.runs",
                    [{"variant": "spirl", "regime": "100k", "games": ["Frostbite"]}])
    one_game = _set(one_game, "experiment.build_tables", ["table1"])
    assert C.params_from_dict(one_game).experiment.tables["table1"].runs[0].games == ("Frostbite",)
    assert C.to_plain(C.params_from_dict(one_game).experiment.tables["table1"].runs[0])["games"] == ["Frostbite"]
    assert "games" not in C.to_plain(C.params_from_dict(raw).experiment.tables["table1"].runs[0])
    outside = _set(raw, "experiment.tables.table14.runs",
                   [{"variant": "spirl", "regime": "100k", "games": ["Frostbite"]}])
    with pytest.raises(ConfigError, match=r"table14\.runs\[0\]\.games has 'Frostbite'; allowed \(the table's games\)"):
        C.params_from_dict(outside)
    needs_mae = _set(one_game, "experiment.tables.table1.runs",
                     [{"variant": "spirl", "regime": "100k", "games": ["Frostbite", "Seaquest"]}])
    with pytest.raises(ConfigError, match=r"no MAE for \['Seaquest'\]"):
        C.params_from_dict(needs_mae)


def test_variant_overrides_are_strict(raw):
    bad = _set(raw, "experiment.variants.spirl.overrides", {"agent": {"pooling": "mean"}})
    with pytest.raises(ConfigError, match=r"unknown key experiment\.variants\.spirl\.overrides\.agent\.pooling"):
        C.params_from_dict(bad)
    bad_value = _set(raw, "experiment.variants.spirl.overrides", {"agent": {"pool": "max"}})
    with pytest.raises(ConfigError, match=r"overrides\.agent\.pool = 'max'"):
        C.params_from_dict(bad_value)
    unknown = _set(raw, "experiment.variants.spirl.overrides", {"saliency": {"k_max": 40}})
    with pytest.raises(ConfigError, match=r"^params: unknown key experiment\.variants\.spirl\.overrides\.saliency\."
                                          r"k_max \(value 40\); allowed keys in experiment\.variants\.spirl\."
                                          r"overrides\.saliency: scorer, selection, xscale"):
        C.params_from_dict(unknown)
    out_of_range = _set(raw, "experiment.variants.spirl.overrides", {"train": {"multi_step": 0}})
    with pytest.raises(ConfigError, match=r"overrides\.train\.multi_step = 0 \(int\) is not allowed: expected an "
                                          r"integer >= 1"):
        C.params_from_dict(out_of_range)
    bad_section = _set(raw, "experiment.variants.spirl.overrides", {"mae": {"epochs": 1}})
    with pytest.raises(ConfigError, match=r"cannot be overridden; allowed: saliency, agent, replay, train"):
        C.params_from_dict(bad_section)


def test_resolve_variant_applies_overrides_only_there():
    params = C.load_params([ROOT / "params.yaml"])
    mean = C.resolve_variant(params, "spirl_mr50_mean")
    assert (mean.agent.pool, mean.saliency.mr, mean.saliency.selection) == ("mean", 0.5, "dynamic")
    fixed = C.resolve_variant(params, "fixed_k_star_m5")
    assert (fixed.saliency.selection, fixed.saliency.mr, fixed.saliency.mr_offset) == ("fixed", "paper_star", -0.05)
    assert C.resolve_variant(params, "de_rainbow_p").replay.prefill == "pretraining"
    assert params.agent.pool == "cls" and params.replay.prefill == "none"  # the base is untouched
    assert C.resolve_variant(params, "spirl") == params
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        C.resolve_variant(params, "nope")



def test_priority_overlays_change_only_the_new_sample_priority():
    """Priority 1 is the default (SPEC §8); conf/investigate/max-priority.yaml adds DE-Rainbow at max priority, and
    conf/investigate/released-priority.yaml (made when max was the default) now equals the default's DE-Rainbow."""
    desk = C.load_params([ROOT / "params.yaml", ROOT / "conf/desk.yaml"])
    ours = C.resolve_variant(desk, "de_rainbow")
    assert ours.replay.new_priority == "one"
    for overlay, variant, priority in (("max-priority.yaml", "de_rainbow_max_priority", "max"),
                                       ("released-priority.yaml", "de_rainbow_released_priority", "one")):
        both = C.load_params([ROOT / "params.yaml", ROOT / "conf/desk.yaml", ROOT / "conf/investigate" / overlay])
        assert set(both.experiment.variants) - set(desk.experiment.variants) == {variant}
        other = C.resolve_variant(both, variant)
        assert other.replay.new_priority == priority
        assert C.replace(other, experiment=ours.experiment,
                         replay=C.replace(other.replay, new_priority="one")) == ours


def test_overlay_merge_rules():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 2}
    assert C.deep_merge(base, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}, "d": 2}
    with pytest.raises(ConfigError, match=r"overlay sets params\.a = 5"):
        C.deep_merge(base, {"a": 5})
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 2}  # not mutated


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        C.load_params([tmp_path / "nope.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        C.load_params([tmp_path / "list.yaml"])


def test_resolve_mr_per_setting():
    params = C.load_params([ROOT / "params.yaml"])
    sal = params.saliency
    assert C.resolve_mr(sal, "Frostbite") == 0.35
    assert C.resolve_mr(C.replace(sal, mr="paper_star", mr_offset=-0.05), "Frostbite") == 0.35
    assert C.resolve_mr(C.replace(sal, mr="paper_star", mr_offset=0.05), "Seaquest") == 0.25
    assert C.resolve_mr(C.replace(sal, mr=0.5), "MsPacman") == 0.5
    assert C.resolve_mr(C.replace(sal, mr="auto"), "MsPacman", 0.4) == 0.4
    with pytest.raises(ConfigError, match="needs the estimated mr"):
        C.resolve_mr(C.replace(sal, mr="auto"), "MsPacman")
    with pytest.raises(ConfigError, match=r"gives -0.05 for Seaquest"):
        C.resolve_mr(C.replace(sal, mr=0.1, mr_offset=-0.15), "Seaquest")


def test_replace_validates_like_the_loader():
    params = C.load_params([ROOT / "params.yaml"])
    faster = C.replace(params.train, lr=1e-3, multi_step=3)
    assert (faster.lr, faster.multi_step, faster.discount) == (1e-3, 3, params.train.discount)
    assert params.train.lr == 1e-4  # the original is untouched
    whole = C.replace(params, train=faster, experiment=C.replace(params.experiment, games=("Seaquest",)))
    assert (whole.train, whole.experiment.games, whole.agent) == (faster, ("Seaquest",), params.agent)
    assert C.replace(params, train=params.train) == params
    assert type(C.replace(params.agent, v_max=10).v_max) is float
    with pytest.raises(ConfigError) as err:
        C.replace(params.agent, heads=True)
    assert str(err.value) == "agent.heads = True (bool) is not allowed: expected an integer >= 1"
    with pytest.raises(ConfigError, match=r"^runtime\.device = 'gpu' \(str\) is not allowed: expected one of 'auto', "
                                          r"'cpu', 'cuda'$"):
        C.replace(params.runtime, device="gpu")
    with pytest.raises(ConfigError, match=r"^unknown key agent\.pooling \(value 'mean'\); allowed keys in agent: "
                                          r"token_dim, heads"):
        C.replace(params.agent, pooling="mean")
    with pytest.raises(ConfigError, match=r"^train\.regimes\.100k\.total_env_steps = 0 \(int\) is not allowed"):
        C.replace(params, train=C.replace(params.train, regimes={"100k": {**C.to_plain(params.train.regimes["100k"]),
                                                                          "total_env_steps": 0}}))
    with pytest.raises(ConfigError, match=r"^RegimeParams\.metric = 'mean' \(str\) is not allowed"):
        C.replace(params.train.regimes["100k"], metric="mean")


def test_allowed_values_are_listed_once():
    """The choices the code checks are the model's Literals (one list each), e.g. replay.is_weight_norm."""
    from spirl.agents import networks, replay
    from spirl.saliency import error_maps

    assert C.IS_WEIGHT_NORMS == ("batch", "buffer") and replay.IS_WEIGHT_NORMS is C.IS_WEIGHT_NORMS
    assert (networks.POOLS, networks.PADDINGS) == (("cls", "mean"), ("zero", "trainable", "masked"))
    assert networks.POOLS is C.POOLS and networks.PADDINGS is C.PADDINGS
    assert error_maps.ERROR_SPACES is C.ERROR_SPACES == ("normalized", "raw")
    assert C.describe(C.ReplayParams.model_fields["is_weight_norm"].annotation) == "one of 'batch', 'buffer'"
    assert C.SCORERS == ("mae_surround", "mae_untrained", "frame_diff", "random", "wu_mask")
