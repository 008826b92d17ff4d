"""Atari environment for SPIRL: ALE with max-pooled frames, frame stacking and no-op starts.

One wrapper around ``ale_py.ALEInterface`` with two modes:

* ``"train"``: a life loss ends the agent episode (the game continues on the next
  reset) and rewards are clipped to their sign.
* ``"eval"``: episodes end only at game over and rewards are the raw game score.

Each agent step repeats the chosen action ``frame_skip`` times. The frame is the
element-wise max of the RGB screens after the last two single-frame actions,
resized to ``frame_size_px`` square with bilinear interpolation. Observations stack
the ``frame_stack`` newest frames, oldest first: ``[frame_stack, S, S, 3]`` uint8.

Only the screens after the last two actions are grabbed (the costly part of a step). If the
game ends before the last action, the frame pools the grabbed screens that exist, and is the
final screen alone when the game ended before the second-to-last action. Such a frame ends the
episode, so it is never an input the agent acts on or bootstraps from.

``get_state()`` / ``set_state()`` snapshot and restore the whole env (emulator with its RNG,
frame ring, no-op generator, counters), so a run resumed from a checkpoint continues
byte-identically. The emulator state is ``ALEState.serialize()`` bytes held as a uint8 array.
"""

from __future__ import annotations

import cv2
import numpy as np
from ale_py import Action, ALEInterface, ALEState

from spirl.envs.ale import derive_seeds, make_ale, rom_id
from spirl.params import AtariParams

MODES = ("train", "eval")
SCREEN_SHAPE = (210, 160, 3)  # raw ALE RGB screen, HWC
NOOP = Action.NOOP.value
FIRE = Action.FIRE.value
STATE_FORMAT = 1  # version of the get_state() dict layout
STATE_KEYS = ("settings", "ale_state", "ring", "newest", "screens", "noop_rng", "active",
              "next_reset_hard", "agent_steps", "lives")


class AtariEnv:
    """Atari game with SPIRL preprocessing in "train" or "eval" mode (see module doc).

    ``reset() -> (obs, info)`` and ``step(action) -> (obs, reward, terminated,
    truncated, info)``; obs is a fresh ``[frame_stack, S, S, 3]`` uint8 array and
    ``action`` indexes ``action_set``, the game's minimal action set.
    """

    def __init__(self, game: str, *, seed: int, mode: str, frame_size_px: int,
                 frame_skip: int, frame_stack: int, max_noops: int,
                 max_episode_agent_steps: int, fire_on_reset: bool):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed modes: {', '.join(MODES)}")
        for name, value in (("frame_size_px", frame_size_px), ("frame_skip", frame_skip),
                            ("frame_stack", frame_stack), ("max_noops", max_noops),
                            ("max_episode_agent_steps", max_episode_agent_steps)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.game = game
        self.mode = mode
        self.ale_seed, self._noop_rng = derive_seeds(seed)
        self._rom = rom_id(game)
        self._ale = make_ale(self._rom, self.ale_seed)
        self.action_set = tuple(self._ale.getMinimalActionSet())
        self.n_actions = len(self.action_set)
        self.has_fire = Action.FIRE in self.action_set
        self._dsize = (frame_size_px, frame_size_px)  # cv2 (width, height)
        self._max_noops = max_noops
        self._max_steps = max_episode_agent_steps
        self._fire = [FIRE] if fire_on_reset and self.has_fire else []
        # One preallocated action list per action: step() allocates none.
        self._repeats = [[a.value] * frame_skip for a in self.action_set]
        # Preallocated buffers and views, so the hot path only indexes Python lists.
        screens = np.zeros((2, *SCREEN_SHAPE), np.uint8)
        self._screens = (screens[0], screens[1])  # after the second-to-last, last frame
        self._ring = np.zeros((frame_stack, frame_size_px, frame_size_px, 3), np.uint8)
        self._slots = list(self._ring)  # one [S, S, 3] view per ring slot
        # For newest slot k: the ring slices whose concatenation is oldest first.
        self._stack_parts = [(self._ring[k + 1:], self._ring[:k + 1]) for k in range(frame_stack)]
        self._newest = frame_stack - 1  # ring slot of the newest frame
        self._active = False  # an episode is running: step() allowed
        self._next_reset_hard = True
        self._agent_steps = 0  # agent steps since the last hard reset
        self._lives = 0
        # What a saved state must match (see get_state / set_state); the seed may differ.
        self._settings = {"game": game, "rom": self._rom, "mode": mode, "frame_size_px": frame_size_px,
                          "frame_skip": frame_skip, "frame_stack": frame_stack, "max_noops": max_noops,
                          "max_episode_agent_steps": max_episode_agent_steps,
                          "fire_on_reset": fire_on_reset}

    @property
    def frame(self) -> np.ndarray:
        """Newest frame (a copy), ``[S, S, 3]`` uint8 RGB."""
        return self._ring[self._newest].copy()

    @property
    def ale(self) -> ALEInterface:
        """The underlying emulator (for inspection; acting on it breaks the wrapper)."""
        return self._ale

    def reset(self, *, hard: bool = False) -> tuple[np.ndarray, dict]:
        """Start an agent episode: hard reset, or continue the game after a life loss.

        A reset is hard on the first call, after game over or the step cap, when the
        episode is still running, or when ``hard`` is True.

        Args:
            hard: force a hard reset (new game) even right after a life loss.
        Returns:
            obs ``[frame_stack, S, S, 3]`` uint8 with all but the newest frame zero;
            info with "hard_reset", "noops", "lives" and "reset_actions" (list of int).
        """
        if self._ale is None:
            raise RuntimeError("AtariEnv.reset() called after close()")
        if hard or self._next_reset_hard or self._active:
            info = self._hard_reset()
        else:
            info = self._continue_after_life_loss()
        self._lives = self._ale.lives()
        self._active = True
        info["lives"] = self._lives
        return self._observation(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Repeat one action ``frame_skip`` times (stopping at game over).

        Args:
            action: index into ``action_set``, in [0, n_actions).
        Returns:
            obs ``[frame_stack, S, S, 3]`` uint8; reward (sign of the raw sum in train
            mode, raw sum in eval mode); terminated; truncated (step cap reached);
            info with "raw_reward", "lives", "life_loss", "game_over",
            "episode_agent_steps".
        """
        if not self._active:
            raise RuntimeError(
                "AtariEnv.step() called before reset(), after the episode ended "
                "(terminated or truncated) or after close(); call reset() first")
        if not 0 <= action < self.n_actions:
            raise IndexError(f"action {action} out of range [0, {self.n_actions})")
        raw, _ = self._run_frames(self._repeats[action])
        self._agent_steps += 1
        lives = self._ale.lives()
        game_over = self._ale.game_over()
        life_loss = lives < self._lives and not game_over
        self._lives = lives
        if self.mode == "train":
            reward = float((raw > 0) - (raw < 0))
            terminated = game_over or life_loss
        else:
            reward = float(raw)
            terminated = game_over
        truncated = self._agent_steps >= self._max_steps
        if truncated:
            terminated = game_over
        if terminated or truncated:
            self._active = False
            self._next_reset_hard = game_over or truncated
        info = {"raw_reward": float(raw), "lives": lives, "life_loss": life_loss,
                "game_over": game_over, "episode_agent_steps": self._agent_steps}
        return self._observation(), reward, terminated, truncated, info

    def get_state(self) -> dict:
        """Snapshot everything needed to continue exactly from here (see ``set_state``).

        The dict holds only numpy uint8 arrays, Python scalars, strings and dicts of them, so it
        can be pickled or ``torch.save``d (load with ``weights_only=False``); it shares no memory
        with the env.

        Returns:
            "format" (``STATE_FORMAT``); "settings": game, ROM id, mode and constructor
            settings (not the seed); "ale_state": ``ALEState.serialize()`` of
            ``cloneState(include_rng=True)`` as a uint8 array [n_bytes]; "ring" [frame_stack,
            S, S, 3] and "newest" (ring slot of the newest frame); "screens" [2, 210, 160, 3]
            (the grab buffers); "noop_rng": the no-op generator's ``bit_generator.state``;
            "active", "next_reset_hard", "agent_steps", "lives".
        Raises:
            RuntimeError: the env was closed.
        """
        if self._ale is None:
            raise RuntimeError("AtariEnv.get_state() called after close()")
        ale_bytes = self._ale.cloneState(include_rng=True).serialize()
        return {
            "format": STATE_FORMAT,
            "settings": dict(self._settings),
            "ale_state": np.frombuffer(ale_bytes, np.uint8).copy(),
            "ring": self._ring.copy(),
            "newest": self._newest,
            "screens": np.stack(self._screens),
            "noop_rng": self._noop_rng.bit_generator.state,
            "active": self._active,
            "next_reset_hard": self._next_reset_hard,
            "agent_steps": self._agent_steps,
            "lives": self._lives,
        }

    def set_state(self, state: dict) -> None:
        """Restore a ``get_state()`` snapshot; the env then continues exactly as the saved one.

        The env must play the same game with the same mode and settings; its seed may differ
        (the emulator RNG and the no-op generator come from the state). Everything is checked
        before anything changes, so a rejected state leaves the env as it was.

        Args:
            state: a dict from ``get_state()`` (possibly after pickle or torch save/load).
        Raises:
            ValueError: the state is of another format, game or settings (the message names the
                mismatch), or its arrays have the wrong dtype or shape.
            RuntimeError: the env was closed.
        """
        if self._ale is None:
            raise RuntimeError("AtariEnv.set_state() called after close()")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"AtariEnv state format {state.get('format')!r} is not {STATE_FORMAT}")
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"AtariEnv state lacks {', '.join(missing)}")
        saved = state["settings"]
        if saved.get("rom") != self._rom:
            raise ValueError(f"AtariEnv state is for game {saved.get('game')!r} (ROM {saved.get('rom')!r}), "
                             f"but this env plays {self.game!r} (ROM {self._rom!r})")
        for name, value in self._settings.items():
            if name not in ("game", "rom") and saved.get(name) != value:
                raise ValueError(f"AtariEnv state has {name}={saved.get(name)!r}, "
                                 f"but this env has {name}={value!r}")
        shapes = {"ring": self._ring.shape, "screens": (2, *SCREEN_SHAPE), "ale_state": None}
        for name, shape in shapes.items():
            array = np.asarray(state[name])
            if array.dtype != np.uint8 or (array.ndim != 1 if shape is None else array.shape != shape):
                raise ValueError(f"AtariEnv state {name!r} must be uint8 of shape "
                                 f"{shape or '[n_bytes]'}, got {array.dtype} {array.shape}")
        newest = int(state["newest"])
        if not 0 <= newest < len(self._slots):
            raise ValueError(f"AtariEnv state newest slot {newest} out of range [0, {len(self._slots)})")
        try:
            ale_state = ALEState(np.ascontiguousarray(state["ale_state"]).tobytes())
        except Exception as error:  # nanobind reports malformed bytes as SystemError
            raise ValueError(f"AtariEnv state 'ale_state' is not a serialized ALEState: {error}") from error
        noop_rng = np.random.Generator(np.random.PCG64())
        noop_rng.bit_generator.state = state["noop_rng"]  # validates the dict before we commit
        # Commit: buffers are filled in place, since the slot and stack views alias them.
        self._ale.restoreState(ale_state)
        self._ring[...] = state["ring"]
        screens = np.asarray(state["screens"])
        self._screens[0][...] = screens[0]
        self._screens[1][...] = screens[1]
        self._newest = newest
        self._noop_rng.bit_generator.state = noop_rng.bit_generator.state
        self._active = bool(state["active"])
        self._next_reset_hard = bool(state["next_reset_hard"])
        self._agent_steps = int(state["agent_steps"])
        self._lives = int(state["lives"])

    def close(self) -> None:
        """Release the emulator; the env cannot be used afterwards."""
        self._ale = None
        self._active = False

    def _hard_reset(self) -> dict:
        """Reset the game, then NOOP, n random NOOPs and FIRE; repeat if the game ends.

        Returns:
            info with "noops" (n), "hard_reset" True and "reset_actions".
        """
        while True:
            self._ale.reset_game()
            noops = int(self._noop_rng.integers(1, self._max_noops + 1))
            actions = [NOOP] * (1 + noops) + self._fire
            self._ring.fill(0)
            self._run_frames(actions)
            if not self._ale.game_over():
                break
        self._agent_steps = 0
        self._next_reset_hard = False
        return {"noops": noops, "hard_reset": True, "reset_actions": actions}

    def _continue_after_life_loss(self) -> dict:
        """Keep the game running after a life loss: one NOOP frame, then FIRE if used.

        Returns:
            info with "noops" 0, "hard_reset" False and "reset_actions".
        """
        actions = [NOOP] + self._fire
        self._ring.fill(0)
        self._run_frames(actions)
        if self._ale.game_over():
            return self._hard_reset()
        return {"noops": 0, "hard_reset": False, "reset_actions": actions}

    def _run_frames(self, actions: list[int]) -> tuple[int, int]:
        """Execute single-frame actions, stop at game over, and push the pooled frame.

        Screens are grabbed only after the last two actions of the list (see module doc).

        Args:
            actions: ALE action ids (ints), one per emulator frame.
        Returns:
            (sum of raw rewards, number of frames executed).
        """
        ale = self._ale
        screens = self._screens
        first_grab = len(actions) - 2
        reward = 0
        executed = 0
        for action in actions:
            reward += ale.act(action)
            if executed >= first_grab:
                ale.getScreenRGB(screens[executed - first_grab])
            executed += 1
            if ale.game_over():
                break
        n = len(actions)
        if executed == n:  # slot 1: the last screen; slot 0: the one before, if n >= 2
            two_screens = n >= 2
        elif executed == n - 1:  # ended at the second-to-last action: its screen is in slot 0
            screens[1][...] = screens[0]
            two_screens = False
        else:  # ended before any screen was grabbed
            ale.getScreenRGB(screens[1])
            two_screens = False
        self._push_frame(two_screens)
        return reward, executed

    def _push_frame(self, two_screens: bool) -> None:
        """Max-pool the grabbed screens, resize to S x S and store as the newest frame.

        Args:
            two_screens: pool both screen buffers; otherwise use the last one alone.
        """
        second_last, last = self._screens
        if two_screens:
            source = np.maximum(second_last, last, out=second_last)
        else:
            source = last
        self._newest = newest = (self._newest + 1) % len(self._slots)
        cv2.resize(source, self._dsize, dst=self._slots[newest], interpolation=cv2.INTER_LINEAR)

    def _observation(self) -> np.ndarray:
        """Return a fresh stack of the frames, oldest first, ``[frame_stack, S, S, 3]``."""
        return np.concatenate(self._stack_parts[self._newest])


def make_env(game: str, seed: int, mode: str, atari: AtariParams) -> AtariEnv:
    """The one Atari wrapper, configured by the `atari` section of params.yaml.

    Args:
        game: game name, e.g. "Frostbite".
        seed: this env's own seed (derive it per env; see spirl.common.seeding).
        mode: "train" (life-loss terminal, clipped rewards) or "eval" (game over, raw score).
        atari: the validated `atari` parameters.
    """
    return AtariEnv(game, seed=seed, mode=mode, frame_size_px=atari.frame_size_px, frame_skip=atari.frame_skip,
                    frame_stack=atari.frame_stack, max_noops=atari.max_noops,
                    max_episode_agent_steps=atari.max_episode_agent_steps, fire_on_reset=atari.fire_on_reset)
