"""spirl.envs.atari: frames byte-exact against a raw ALE, resets, life loss, clipping, step cap, seeding,
state save/restore."""

from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest
import torch
from ale_py import Action, ALEInterface, LoggerMode, roms

from spirl.envs.ale import derive_seeds, rom_id
from spirl.envs.atari import AtariEnv

PAPER = dict(frame_size_px=96, frame_skip=4, frame_stack=4, max_noops=30,
             max_episode_agent_steps=27_000, fire_on_reset=True)
NOOP, FIRE = Action.NOOP.value, Action.FIRE.value


def make_env(game: str = "Frostbite", seed: int = 0, mode: str = "train", **overrides) -> AtariEnv:
    """An AtariEnv with the paper settings, some of them overridden."""
    return AtariEnv(game, seed=seed, mode=mode, **{**PAPER, **overrides})


def random_actions(env: AtariEnv, n: int, seed: int) -> list[int]:
    """A seeded uniform random action sequence for `env`."""
    return [int(a) for a in np.random.default_rng(seed).integers(env.n_actions, size=n)]


class ReferenceALE:
    """Independent re-implementation of the frame rule on a raw ALEInterface.

    It grabs the screen after every frame and applies the rule from the list of all screens: the
    max of the screens after the last two actions of the list that ran, or the final screen alone
    if the game ended before the second-to-last action.
    """

    def __init__(self, env: AtariEnv):
        ALEInterface.setLoggerMode(LoggerMode.Error)
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", env.ale_seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(roms.get_rom_path(rom_id(env.game)))
        self.size = env.frame.shape[0]

    def run(self, actions: list[int]) -> tuple[np.ndarray, int, list[np.ndarray]]:
        """Execute single-frame actions until game over; returns (frame, raw reward, screens)."""
        screens, reward = [], 0
        for action in actions:
            reward += self.ale.act(action)
            screens.append(self.ale.getScreenRGB())
            if self.ale.game_over():
                break
        window = screens[max(len(actions) - 2, 0):]  # screens after the last two actions that ran
        pooled = np.maximum(window[0], window[1]) if len(window) == 2 else (window or screens)[-1]
        frame = cv2.resize(pooled, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return frame, reward, screens


def check_against_reference(env: AtariEnv, actions: list[int]) -> dict:
    """Step `env` with `actions` (resetting on episode end) and compare every obs with ReferenceALE.

    Returns:
        counts: "steps", "episodes" (ended), "life_losses", and "game_overs": for each game
        over, the number of repeats that ran (fewer than 4: the game ended mid-step).
    """
    ref = ReferenceALE(env)
    counts = dict(steps=0, episodes=0, life_losses=0, game_overs=[])
    stack_size = PAPER["frame_stack"]

    def do_reset():
        obs, info = env.reset()
        if info["hard_reset"]:
            ref.ale.reset_game()
        frame, _, _ = ref.run(info["reset_actions"])
        new_stack = [np.zeros_like(frame)] * (stack_size - 1) + [frame]
        np.testing.assert_array_equal(obs, np.stack(new_stack))
        return new_stack

    stack = do_reset()
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        frame, raw, screens = ref.run([env.action_set[action].value] * PAPER["frame_skip"])
        stack = stack[1:] + [frame]
        np.testing.assert_array_equal(obs, np.stack(stack))
        assert info["raw_reward"] == raw
        assert info["game_over"] == ref.ale.game_over()
        assert info["lives"] == ref.ale.lives()
        counts["steps"] += 1
        counts["life_losses"] += info["life_loss"]
        if info["game_over"]:
            counts["game_overs"].append(len(screens))
        if terminated or truncated:
            counts["episodes"] += 1
            stack = do_reset()
    return counts


def test_observation_shape_dtype_and_reset_stack():
    env = make_env()
    obs, info = env.reset()
    assert obs.shape == (4, 96, 96, 3) and obs.dtype == np.uint8
    assert not obs[:3].any()  # three zero frames ...
    assert obs[3].any()  # ... then the first frame
    np.testing.assert_array_equal(env.frame, obs[-1])
    assert info["hard_reset"] is True and info["lives"] == 4
    obs2, *_ = env.step(0)
    np.testing.assert_array_equal(obs2[:3], obs[1:])  # oldest first: the stack shifted by one
    np.testing.assert_array_equal(env.frame, obs2[-1])
    assert not np.shares_memory(obs, obs2)  # fresh arrays: callers may keep and even modify them
    newest = obs2[-1].copy()
    obs2[:] = 7
    obs3, *_ = env.step(0)
    np.testing.assert_array_equal(obs3[-2], newest)


@pytest.mark.parametrize("game", ["Frostbite", "MsPacman"])
def test_frames_match_raw_ale_byte_for_byte_in_train_mode(game):
    env = make_env(game, seed=3)
    counts = check_against_reference(env, random_actions(env, 300, seed=1))
    assert counts["steps"] == 300
    # the life-loss continuation is covered too: [NOOP, FIRE] in Frostbite, [NOOP] in MsPacman
    assert counts["life_losses"] >= 1


def test_frames_match_raw_ale_when_the_game_ends_mid_repeat():
    # Breakout episodes of a random policy are short: several whole games in eval mode.
    env = make_env("Breakout", seed=1, mode="eval")
    counts = check_against_reference(env, random_actions(env, 1060, seed=1))
    game_overs = counts["game_overs"]
    assert counts["episodes"] == len(game_overs) >= 6
    # games ended after 1, 2 and 3 of the 4 repeats: every early-ending case was compared
    assert {1, 2, 3} <= set(game_overs)


def test_seeds_follow_the_seed_sequence_rule():
    children = np.random.SeedSequence(123).spawn(2)
    expected_ale_seed = int(children[0].generate_state(1, np.uint32)[0] % 2**31)
    expected_noops = np.random.Generator(np.random.PCG64(children[1])).integers(1, 31, size=5)
    env = make_env("Frostbite", seed=123)
    assert env.ale_seed == expected_ale_seed
    assert 0 <= env.ale_seed < 2**31
    assert env.ale.getInt("random_seed") == expected_ale_seed
    assert [env.reset()[1]["noops"] for _ in range(5)] == expected_noops.tolist()


def test_noop_counts_and_reset_actions():
    env = make_env("Frostbite", seed=7)
    assert env.has_fire and env.n_actions == 18
    noops = []
    for _ in range(300):
        _, info = env.reset()  # the episode is running, so every reset is hard
        assert info["hard_reset"] is True
        assert info["reset_actions"] == [NOOP] * (1 + info["noops"]) + [FIRE]
        noops.append(info["noops"])
    assert min(noops) >= 1 and max(noops) <= 30
    assert len(set(noops)) >= 25
    pacman = make_env("MsPacman", seed=7)
    assert not pacman.has_fire and pacman.n_actions == 9
    _, info = pacman.reset()
    assert info["reset_actions"] == [NOOP] * (1 + info["noops"])
    assert env.ale.getEpisodeFrameNumber() == 1 + noops[-1] + 1


def run_until(env: AtariEnv, actions: list[int], stop) -> tuple[int, tuple]:
    """Step `env` through `actions` until stop(step result) holds; returns (step index, result)."""
    for t, action in enumerate(actions):
        result = env.step(action)
        if stop(result):
            return t, result
    raise AssertionError("stop condition never met")


def test_life_loss_is_terminal_in_train_mode_and_the_game_continues():
    env = make_env("Seaquest", seed=0)
    _, info = env.reset()
    lives_before = info["lives"]
    actions = random_actions(env, 5000, seed=0)
    _, (obs, _, terminated, truncated, info) = run_until(env, actions, lambda r: r[2] or r[3])
    assert terminated and not truncated
    assert info["life_loss"] is True and info["game_over"] is False and not env.ale.game_over()
    assert info["lives"] == lives_before - 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    frames_before = env.ale.getEpisodeFrameNumber()
    obs, info = env.reset()
    assert info["hard_reset"] is False and info["noops"] == 0
    assert info["reset_actions"] == [NOOP, FIRE]
    assert info["lives"] == lives_before - 1  # the game was not reset
    assert env.ale.getEpisodeFrameNumber() == frames_before + 2  # NOOP + FIRE frames, no restart
    assert not obs[:3].any() and obs[3].any()
    run_until(env, actions, lambda r: r[4]["life_loss"])
    _, info = env.reset(hard=True)  # forced new game (collect's first-life-only option)
    assert info["hard_reset"] is True and info["lives"] == lives_before
    assert env.ale.getEpisodeFrameNumber() == len(info["reset_actions"])


def test_eval_mode_keeps_playing_through_life_losses_with_raw_rewards():
    env = make_env("Frostbite", seed=0, mode="eval")
    env.reset()
    rewards, raws, life_losses = [], [], 0
    for action in random_actions(env, 5000, seed=0):
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        raws.append(info["raw_reward"])
        life_losses += info["life_loss"]
        assert not truncated
        assert terminated == info["game_over"] == env.ale.game_over()
        if terminated:
            break
    assert terminated and info["lives"] == 0
    assert life_losses >= 3  # Frostbite starts with 4 lives
    assert sum(rewards) == sum(raws) > 0
    assert max(rewards) > 1  # raw points (10 per floe jump), not clipped


def test_train_mode_clips_rewards_to_their_sign():
    env = make_env("Frostbite", seed=0)
    env.reset()
    big_raw_clipped_to_one = 0
    for action in random_actions(env, 1500, seed=0):
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == float(np.sign(info["raw_reward"]))
        big_raw_clipped_to_one += info["raw_reward"] > 1 and reward == 1.0
        if terminated or truncated:
            env.reset()
    assert big_raw_clipped_to_one >= 5


def test_step_cap_truncates_exactly_and_next_reset_is_hard():
    env = make_env("Frostbite", seed=0, mode="eval", max_episode_agent_steps=100)
    env.reset()
    for t, action in enumerate(random_actions(env, 100, seed=0), start=1):
        _, _, terminated, truncated, info = env.step(action)
        assert info["episode_agent_steps"] == t and not terminated
        assert truncated == (t == 100)
    assert not info["game_over"]
    with pytest.raises(RuntimeError):
        env.step(0)
    _, info = env.reset()
    assert info["hard_reset"] is True
    assert env.ale.getEpisodeFrameNumber() == len(info["reset_actions"])


def test_step_cap_counts_across_life_losses():
    actions = random_actions(make_env("Seaquest"), 5000, seed=0)
    probe = make_env("Seaquest", seed=0)
    probe.reset()
    first_loss, _ = run_until(probe, actions, lambda r: r[4]["life_loss"])
    cap = first_loss + 1 + 10  # ten agent steps into the second life
    env = make_env("Seaquest", seed=0, max_episode_agent_steps=cap)
    env.reset()
    t, (_, _, terminated, truncated, info) = run_until(env, actions, lambda r: r[2] or r[3])
    assert t == first_loss and terminated and not truncated and info["life_loss"]
    _, info = env.reset()
    assert info["hard_reset"] is False
    for k, action in enumerate(actions[t + 1:t + 11], start=1):
        _, _, terminated, truncated, info = env.step(action)
        assert info["episode_agent_steps"] == first_loss + 1 + k
        assert truncated == (k == 10) and not terminated
    _, info = env.reset()
    assert info["hard_reset"] is True


def rollout(seed: int, actions: list[int]) -> list[tuple]:
    """Observations, rewards and flags of a train-mode Frostbite run, resetting on episode end."""
    env = make_env("Frostbite", seed=seed, max_episode_agent_steps=400)
    obs, _ = env.reset()
    out = [(obs, 0.0, False, False)]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs, 0.0, False, False))
    return out


def test_same_seed_is_byte_identical_and_other_seed_differs():
    actions = random_actions(make_env(), 1000, seed=5)
    first, second, other = rollout(11, actions), rollout(11, actions), rollout(12, actions)
    assert len(first) == len(second) > 1000
    ends = sum(terminated or truncated for _, _, terminated, truncated in first)
    assert ends >= 3  # several life-loss and cap resets are inside the 1,000 steps
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:] == b[1:]
    differing = sum(not np.array_equal(a[0], c[0]) for a, c in zip(first, other, strict=False))
    assert differing >= 500


def test_rom_ids_and_errors():
    assert rom_id("MsPacman") == "ms_pacman"
    assert rom_id("BattleZone") == "battle_zone"
    assert rom_id("Frostbite") == "frostbite"
    with pytest.raises(ValueError, match=r"'NotAGame'.*frostbite.*ms_pacman"):
        make_env("NotAGame")
    with pytest.raises(ValueError, match=r"'test'.*train, eval"):
        make_env(mode="test")
    env = make_env()
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset()
    with pytest.raises(IndexError):
        env.step(env.n_actions)
    env.close()
    with pytest.raises(RuntimeError):
        env.step(0)


# --- get_state / set_state: exact checkpoint and resume ---------------------------------------


def play(env: AtariEnv, actions: list[int], start: int, stop: int) -> list[tuple]:
    """Step `env` through actions[start:stop], resetting on episode end; returns every result."""
    records = []
    for t in range(start, stop):
        obs, reward, terminated, truncated, info = env.step(actions[t])
        records.append(("step", t, obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            records.append(("reset", t, obs, info))
    return records


def assert_byte_identical(got: list[tuple], expected: list[tuple], label: str = "") -> None:
    """Same records: equal observations, and equal pickles (values and their types) of everything."""
    assert len(got) == len(expected), label
    for g, e in zip(got, expected, strict=True):
        assert g[:2] == e[:2], label
        np.testing.assert_array_equal(g[2], e[2], err_msg=f"{label} {g[:2]}")
        assert g[2].dtype == e[2].dtype == np.uint8
        assert pickle.dumps(g) == pickle.dumps(e), (label, g[:2], g[3:], e[3:])


def assert_states_equal(x: dict, y: dict) -> None:
    assert x.keys() == y.keys()
    for key in x:
        if isinstance(x[key], np.ndarray):
            assert x[key].dtype == y[key].dtype
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
        else:
            assert x[key] == y[key], key


def round_trips(state: dict) -> list[tuple[str, dict]]:
    """The state itself, and after pickle and torch.save/torch.load through memory."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return [("direct", state), ("pickle", pickle.loads(pickle.dumps(state))),
            ("torch", torch.load(buffer, weights_only=False))]


def check_resume(game: str, mode: str, seed: int, other_seed: int) -> tuple[list[tuple], dict]:
    """Run env A for 500 steps, saving at step 250; resume fresh envs B from the state (also after
    pickle / torch round trips, and into an env that already played) and compare steps 250..500.

    Returns:
        A's records of steps 250..500 and the state saved at step 250.
    """
    actions = random_actions(make_env(game), 500, seed=seed)
    a = make_env(game, seed=seed, mode=mode)
    a.reset()
    play(a, actions, 0, 250)
    state = a.get_state()
    expected = play(a, actions, 250, 500)
    final = a.get_state()
    for how, restored in round_trips(state):
        b = make_env(game, seed=other_seed, mode=mode)
        b.set_state(restored)
        assert_states_equal(b.get_state(), state)  # every part restored, emulator bytes included
        assert_byte_identical(play(b, actions, 250, 500), expected, how)
        assert_states_equal(b.get_state(), final)
    used = make_env(game, seed=other_seed, mode=mode)  # an env with a history of its own
    used.reset()
    play(used, actions[::-1], 0, 100)
    used.set_state(state)
    assert_byte_identical(play(used, actions, 250, 500), expected)
    return expected, state


def test_set_state_resumes_byte_identically_in_train_mode():
    expected, state = check_resume("Frostbite", "train", seed=0, other_seed=99)
    steps = [r for r in expected if r[0] == "step"]
    resets = [r[3] for r in expected if r[0] == "reset"]
    assert any(info["life_loss"] for *_, info in steps)  # a life loss after the checkpoint ...
    assert any(not info["hard_reset"] for info in resets)  # ... continued with [NOOP, FIRE]
    assert any(info["game_over"] for *_, info in steps)  # and a game over ...
    assert any(info["hard_reset"] for info in resets)  # ... followed by a hard reset with no-ops
    assert state["active"] and state["settings"]["mode"] == "train"
    assert state["ale_state"].dtype == np.uint8 and state["ale_state"].ndim == 1
    # the emulator's RNG is saved too: the state is larger than the one cloned without it
    without_rng = make_env("Frostbite").ale.cloneState(include_rng=False).serialize()
    assert state["ale_state"].size > len(without_rng)


def test_set_state_restores_the_noop_generator_across_a_game_over_in_eval_mode():
    expected, state = check_resume("Frostbite", "eval", seed=0, other_seed=99)
    steps = [r for r in expected if r[0] == "step"]
    assert sum(info["life_loss"] for *_, info in steps) >= 1
    hard = [r[3] for r in expected if r[0] == "reset"]
    assert len(hard) >= 1 and all(info["hard_reset"] for info in hard)  # eval: only game overs end
    # The resumed env drew A's no-op count, which its own seed's generator would not have drawn.
    fresh_draw = int(derive_seeds(99)[1].integers(1, PAPER["max_noops"] + 1))
    assert hard[0]["noops"] != fresh_draw
    b = make_env("Frostbite", seed=99, mode="eval")
    b.set_state(state)
    assert b._noop_rng.bit_generator.state == state["noop_rng"]


def test_state_saved_between_episode_end_and_reset():
    actions = random_actions(make_env(), 5000, seed=0)
    a = make_env("Frostbite", seed=0)
    a.reset()
    run_until(a, actions, lambda r: r[4]["life_loss"])
    after_life_loss = a.get_state()
    assert not after_life_loss["active"] and not after_life_loss["next_reset_hard"]
    while True:  # train mode: play on through life losses until the game is over
        a.reset()
        _, (*_, info) = run_until(a, actions, lambda r: r[2] or r[3])
        if info["game_over"]:
            break
    after_game_over = a.get_state()
    assert not after_game_over["active"] and after_game_over["next_reset_hard"]
    for state, hard in ((after_life_loss, False), (after_game_over, True)):
        a.set_state(state)  # an env may also go back to its own earlier state
        b = make_env("Frostbite", seed=5)
        b.set_state(state)
        for env in (a, b):
            with pytest.raises(RuntimeError, match="reset"):
                env.step(0)
        (obs_a, info_a), (obs_b, info_b) = a.reset(), b.reset()
        assert info_a["hard_reset"] is hard
        np.testing.assert_array_equal(obs_a, obs_b)
        assert info_a == info_b
        assert_byte_identical(play(b, actions, 0, 200), play(a, actions, 0, 200))


def test_set_state_rejects_another_game_or_settings_and_leaves_the_env_unchanged():
    env = make_env("Frostbite", seed=1)
    env.reset()
    env.step(3)
    before = env.get_state()
    pacman = make_env("MsPacman", seed=1)
    pacman.reset()
    with pytest.raises(ValueError, match=r"'MsPacman'.*'Frostbite'"):
        env.set_state(pacman.get_state())
    for overrides, name in (({"mode": "eval"}, "mode"), ({"frame_stack": 3}, "frame_stack"),
                            ({"max_noops": 10}, "max_noops"), ({"fire_on_reset": False}, "fire_on_reset"),
                            ({"max_episode_agent_steps": 100}, "max_episode_agent_steps")):
        other = make_env("Frostbite", seed=1, **overrides)
        other.reset()
        with pytest.raises(ValueError, match=name):
            env.set_state(other.get_state())
    broken = dict(before, ring=before["ring"][:, :-1])
    with pytest.raises(ValueError, match="ring"):
        env.set_state(broken)
    with pytest.raises(ValueError, match="lacks noop_rng"):
        env.set_state({k: v for k, v in before.items() if k != "noop_rng"})
    with pytest.raises(ValueError, match="format"):
        env.set_state(dict(before, format=0))
    assert_states_equal(env.get_state(), before)
    env.close()
    with pytest.raises(RuntimeError, match="close"):
        env.get_state()
    with pytest.raises(RuntimeError, match="close"):
        env.set_state(before)
