"""Strict configuration: both guards (JSON schema, dataclasses) reject unknown, missing, mistyped keys."""

from __future__ import annotations

import copy
import dataclasses
import typing

import pytest
import yaml

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
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.agent.pool = "mean"  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.collect.frames_per_game["Frostbite"] = 1  # type: ignore[index]


# --- the three failure kinds, through each guard --------------------------------------------------


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
}


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_schema_rejects(raw, kind):
    mutate, words = BAD_CASES[kind]
    with pytest.raises(ConfigError) as err:
        C.validate_schema(mutate(raw))
    for word in words[:2]:
        assert word in str(err.value)


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_dataclasses_reject(raw, kind):
    mutate, words = BAD_CASES[kind]
    with pytest.raises(ConfigError) as err:
        C.params_from_dict(mutate(raw))
    message = str(err.value)
    for word in words:
        assert word in message, message


def test_dataclass_messages_say_what_is_allowed(raw):
    with pytest.raises(ConfigError, match=r"missing key train\.discount: expected a number"):
        C.params_from_dict(_delete(raw, "train.discount"))
    with pytest.raises(ConfigError, match=r"allowed keys in agent: token_dim, heads"):
        C.params_from_dict(_set(raw, "agent.poool", "cls"))
    with pytest.raises(ConfigError, match=r"expected an integer"):
        C.params_from_dict(_set(raw, "agent.hidden_size", "256"))
    with pytest.raises(ConfigError, match=r"exactly 2"):
        C.params_from_dict(_set(raw, "mae.adam_betas", [0.9]))


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
    with pytest.raises(ConfigError, match=r"overrides.*pooling"):
        C.validate_schema(bad)
    bad_value = _set(raw, "experiment.variants.spirl.overrides", {"agent": {"pool": "max"}})
    with pytest.raises(ConfigError, match=r"overrides\.agent\.pool = 'max'"):
        C.params_from_dict(bad_value)
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



def test_released_priority_overlay_changes_only_the_new_sample_priority():
    """conf/investigate/released-priority.yaml adds one variant: DE-Rainbow, new rows at priority 1 (SPEC §12)."""
    desk = C.load_params([ROOT / "params.yaml", ROOT / "conf/desk.yaml"])
    both = C.load_params([ROOT / "params.yaml", ROOT / "conf/desk.yaml",
                          ROOT / "conf/investigate/released-priority.yaml"])
    added = set(both.experiment.variants) - set(desk.experiment.variants)
    assert added == {"de_rainbow_released_priority"}
    released = C.resolve_variant(both, "de_rainbow_released_priority")
    ours = C.resolve_variant(desk, "de_rainbow")
    assert (ours.replay.new_priority, released.replay.new_priority) == ("max", "one")
    assert dataclasses.replace(released, experiment=ours.experiment,
                               replay=dataclasses.replace(released.replay, new_priority="max")) == ours

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


# --- the schema and the dataclasses describe the same keys -------------------------------------


def _schema_section(schema: dict, node: dict) -> dict:
    return schema["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node


def _compare(schema: dict, node: dict, cls: type, where: str) -> None:
    node = _schema_section(schema, node)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert node.get("additionalProperties") is False, where
    assert set(node["properties"]) == fields, where
    assert set(node["required"]) == fields, where
    hints = typing.get_type_hints(cls)
    for name, tp in hints.items():
        child = _schema_section(schema, node["properties"][name])
        if dataclasses.is_dataclass(tp):
            _compare(schema, child, tp, f"{where}.{name}")
        elif typing.get_origin(tp) is typing.get_origin(typing.Mapping[str, int]):
            value_tp = typing.get_args(tp)[1]
            if dataclasses.is_dataclass(value_tp):
                (pattern_node,) = child["patternProperties"].values()
                _compare(schema, pattern_node, value_tp, f"{where}.{name}.*")


def test_schema_and_dataclasses_agree():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "params.schema.yaml").read_text())
    _compare(schema, schema, C.Params, "params")
    overrides = schema["properties"]["experiment"]["properties"]["variants"]["patternProperties"]
    (variant,) = overrides.values()
    override_props = variant["properties"]["overrides"]["properties"]
    assert set(override_props) == set(C.OVERRIDABLE)
    for section, cls in C.OVERRIDABLE.items():
        assert set(override_props[section]["properties"]) == {f.name for f in dataclasses.fields(cls)}
        assert "required" not in override_props[section]


def test_resolve_mr_per_setting():
    params = C.load_params([ROOT / "params.yaml"])
    sal = params.saliency
    assert C.resolve_mr(sal, "Frostbite") == 0.35
    assert C.resolve_mr(dataclasses.replace(sal, mr="paper_star", mr_offset=-0.05), "Frostbite") == 0.35
    assert C.resolve_mr(dataclasses.replace(sal, mr="paper_star", mr_offset=0.05), "Seaquest") == 0.25
    assert C.resolve_mr(dataclasses.replace(sal, mr=0.5), "MsPacman") == 0.5
    assert C.resolve_mr(dataclasses.replace(sal, mr="auto"), "MsPacman", 0.4) == 0.4
    with pytest.raises(ConfigError, match="needs the estimated mr"):
        C.resolve_mr(dataclasses.replace(sal, mr="auto"), "MsPacman")
    with pytest.raises(ConfigError, match=r"gives -0.05 for Seaquest"):
        C.resolve_mr(dataclasses.replace(sal, mr=0.1, mr_offset=-0.15), "Seaquest")
