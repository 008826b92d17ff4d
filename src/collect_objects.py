"""Collect random-policy frames of one game with OCAtari's RAM-mode object lists (SPEC §14); one job per game.

OCAtari 2.2.1 pins numpy<2 and pulls GUI and vision packages (pygame, scikit-image, ...), so this stage runs in
an environment of its own, never the main one (the code itself also runs under numpy 2, see RamObjects.update).
`make setup` builds it (`make objects-env`: .venv-objects with ocatari==2.2.1, ale-py==0.12.1, the headless
OpenCV build and a .pth to src/ so that `import spirl` works); the pipeline then runs, from the repository root:

PYTHONHASHSEED=0 .venv-objects/bin/python src/collect_objects.py --params params.yaml conf/full.yaml \
    --game Frostbite --out-frames data/full/objects/Frostbite/frames.npz \
    --out-objects data/full/objects/Frostbite/objects.npz --out-run data/full/objects/Frostbite/run.json \
    --log work/full/logs/objects/Frostbite.log

Sizes come from params (criteria.object_frames frames, every criteria.object_every-th agent step; --n-frames and
--every override them for checks), seeds from criteria.seed and the game.

Frames come from the project's one wrapper (`spirl.envs.atari`, train mode, uniform random actions, seeded apart
from the pre-training collection). OCAtari never runs an emulator of its own: its RAM extraction
(`ocatari.ram.extract_ram_info.detect_objects_ram`, a function of a 128-byte RAM array) is applied to the RAM of
the wrapper's own ALE after every reset and every agent step, as OCAtari itself does after each step of its
frameskip-4 env, so the extractor's internal object slots evolve as in OCAtari. Every k-th agent step (k =
criteria.object_every) the newest frame is stored with the object list read from the RAM at that moment, i.e.
after the last emulator frame of the step: the state whose raw screen is the last of the two pooled into the
frame. With it goes the previous agent step's frame of the same env (`previous`, for the frame_diff scorer,
SPEC §13) and `has_previous`, False when the kept frame is the first of an episode (right after a reset: no
previous frame, `previous` all zero), and the wrapper's whole observation at that step (`stacks`, the agent's
input: the frame_stack newest frames, oldest first, zeros before the episode's start; for agent saliency, SPEC §16).
"""

from __future__ import annotations

import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import write_json, write_npz
from spirl.common.runinfo import run_record
from spirl.common.seeding import derive_seed
from spirl.envs.atari import AtariEnv, make_env
from spirl.envs.object_files import pack_objects
from spirl.params import load_params, to_plain

SCREEN_HW = (210, 160)


def check_ocatari_game(game: str) -> None:
    """Raise ValueError unless OCAtari has a RAM module for `game`.

    OCAtari looks its modules up as `ocatari.ram.<game.lower()>`, so our CamelCase names ("MsPacman") are
    OCAtari's names too.
    """
    import sys

    import ocatari.ram  # noqa: F401  (imports every game module)

    if f"ocatari.ram.{game.lower()}" not in sys.modules:
        raise ValueError(f"OCAtari has no RAM extraction for {game!r}")


class RamObjects:
    """OCAtari's RAM-mode object list of one game, updated from an emulator's RAM.

    `objects` is OCAtari's fixed-length slot list (`init_objects(game, hud=True)`): absent objects are falsy
    NoObject entries. Slots at index >= `n_base` exist only in hud=True mode (HUD items such as the score).
    """

    def __init__(self, game: str):
        from ocatari.ram.extract_ram_info import detect_objects_ram, init_objects

        check_ocatari_game(game)
        self.game = game
        self._init, self._detect = init_objects, detect_objects_ram
        self.n_base = len(init_objects(self.game, False))
        self.objects: list = []
        self.reset()

    def reset(self) -> None:
        """Fresh slots, as OCAtari's env does on reset()."""
        self.objects = self._init(self.game, True)
        self._n_slots = len(self.objects)

    def update(self, ram: np.ndarray) -> None:
        """Run OCAtari's RAM extraction on one RAM state.

        The RAM is handed over as int64. OCAtari 2.2.1 is written for numpy < 2, where a uint8 scalar combined
        with a Python int gives an int64 result (``ram[47]`` = 200: ``97 - ram[47]`` = -103,
        ``_convert_number(ram[122]) * 10000`` = 2,000,000). Under numpy 2 (NEP 50) the same expressions stay
        uint8: they wrap (153) or raise OverflowError (MsPacman's and Seaquest's score). Its RAM code for these
        four games does no uint8-with-uint8 and no array arithmetic, so int64 RAM gives numpy 1's results
        under either numpy (checked: identical object lists for 4 x 3000 steps, numpy 1.26 uint8 vs 2.4 int64).

        Args:
            ram: [128] uint8, `ale.getRAM()`.
        """
        self._detect(self.objects, np.asarray(ram, dtype=np.int64), self.game, True)
        if len(self.objects) != self._n_slots:
            raise RuntimeError(f"OCAtari changed the number of object slots of {self.game}")

    def current(self) -> list[tuple[str, tuple[int, int, int, int], bool]]:
        """The present objects as (category, (x, y, w, h) in screen pixels, hud), in slot order.

        `hud` is OCAtari's own flag or a hud=True-only slot (e.g. MsPacman's fruit indicator below the maze).
        An object held in several slots is listed once (OCAtari 2.2.1's BattleZone puts its second enemy in
        slots 2 and 4; Seaquest starts with one CollectedDiver instance in six slots).
        """
        out = []
        seen = set()
        for slot, obj in enumerate(self.objects):
            if obj and id(obj) not in seen:
                seen.add(id(obj))
                x, y, w, h = (int(v) for v in obj.xywh)
                out.append((obj.category, (x, y, w, h), bool(obj.hud) or slot >= self.n_base))
        return out


def collect_with_objects(env: AtariEnv, tracker: RamObjects, n_frames: int, every: int,
                         policy_rng: np.random.Generator, first_life_only: bool, keep_screens: bool,
                         on_frame=None) -> tuple[dict[str, np.ndarray], list[list]]:
    """Play uniform random actions and keep every `every`-th frame with its object list and previous frame.

    Args:
        env: a train-mode AtariEnv, not yet reset; tracker: the game's RamObjects.
        n_frames: frames to keep; every: keep agent steps t = 0, every, 2 every, ... (t counts all steps).
        policy_rng: Generator of the actions; first_life_only: hard reset after a life loss (SPEC §2 quirk).
        keep_screens: also keep the raw 210 x 160 screen the objects refer to (for checking boxes).
        on_frame: called once per kept frame (progress bar).
    Returns:
        arrays: "frames" [F, S, S, 3] uint8 (the newest wrapper frame), "previous" [F, S, S, 3] uint8 (the
        newest frame of the agent step before, same env; zeros where there is none), "has_previous" [F] bool
        (False for an episode's first frame, i.e. the frame a reset gave), "steps" [F] int64 (agent step t),
        "episodes" [F] int32, "stacks" [F, frame_stack, S, S, 3] uint8 (the observation, newest frame last), and
        "screens" [F, 210, 160, 3] uint8 if keep_screens;
        objects: F lists of (category, (x, y, w, h), hud).
    """
    if n_frames < 1 or every < 1:
        raise ValueError(f"n_frames and every must be >= 1, got {n_frames}, {every}")
    obs, _ = env.reset()
    tracker.reset()
    tracker.update(env.ale.getRAM())
    size = env.frame.shape
    arrays = {"frames": np.zeros((n_frames, *size), np.uint8), "previous": np.zeros((n_frames, *size), np.uint8),
              "has_previous": np.zeros(n_frames, bool), "steps": np.zeros(n_frames, np.int64),
              "episodes": np.zeros(n_frames, np.int32), "stacks": np.zeros((n_frames, *obs.shape), np.uint8)}
    if keep_screens:
        arrays["screens"] = np.zeros((n_frames, *SCREEN_HW, 3), np.uint8)
    objects: list[list] = []
    step = episode = 0
    previous = None  # the frame of the agent step before, None right after a reset
    while len(objects) < n_frames:
        frame = env.frame  # a copy
        if step % every == 0:
            i = len(objects)
            arrays["frames"][i] = frame
            arrays["stacks"][i] = obs
            if previous is not None:
                arrays["previous"][i] = previous
                arrays["has_previous"][i] = True
            arrays["steps"][i] = step
            arrays["episodes"][i] = episode
            if keep_screens:
                env.ale.getScreenRGB(arrays["screens"][i])
            objects.append(tracker.current())
            if on_frame is not None:
                on_frame()
        obs, _, terminated, truncated, _ = env.step(int(policy_rng.integers(env.n_actions)))
        previous = frame
        step += 1
        if terminated or truncated:
            episode += 1
            previous = None
            obs, info = env.reset(hard=first_life_only)
            if info["hard_reset"]:
                tracker.reset()  # a new game: fresh OCAtari slots, as its env's reset() gives
        tracker.update(env.ale.getRAM())
    return arrays, objects


def category_counts(objects: list[list]) -> dict[str, dict[str, int]]:
    """{"hud": {category: count}, "scene": {category: count}} over all kept frames."""
    counts = {"hud": Counter(), "scene": Counter()}
    for frame in objects:
        for category, _, hud in frame:
            counts["hud" if hud else "scene"][category] += 1
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


def object_sizes(params, n_frames: int | None, every: int | None) -> tuple[int, int]:
    """(frames to keep, keep every k-th step): criteria.object_frames / object_every unless overridden."""
    return (params.criteria.object_frames if n_frames is None else n_frames,
            params.criteria.object_every if every is None else every)


def object_seeds(criteria_seed: int, game: str) -> dict[str, int]:
    """The collection's named seeds (env, policy), derived from criteria.seed and the game."""
    return {k: derive_seed(criteria_seed, "objects", game, k) for k in ("env", "policy")}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--game", required=True)
    parser.add_argument("--n-frames", type=int, default=None, help="override criteria.object_frames (checks)")
    parser.add_argument("--every", type=int, default=None, help="override criteria.object_every (checks)")
    parser.add_argument("--keep-screens", action="store_true", help="also store the raw screens (checks)")
    parser.add_argument("--out-frames", type=Path, required=True)
    parser.add_argument("--out-objects", type=Path, required=True)
    parser.add_argument("--out-run", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("objects", args.log)
    params = load_params(args.params)
    n_frames, every = object_sizes(params, args.n_frames, args.every)
    tracker = RamObjects(args.game)
    seeds = object_seeds(params.criteria.seed, args.game)
    log.info("collecting %d frames of %s, every %d-th step, with OCAtari RAM objects (seeds %s)",
             n_frames, args.game, every, seeds)

    start = time.perf_counter()
    env = make_env(args.game, seeds["env"], "train", params.atari)
    with tqdm(total=n_frames, desc=f"objects {args.game}", unit="frame", mininterval=2.0) as bar:
        arrays, objects = collect_with_objects(
            env, tracker, n_frames, every, np.random.Generator(np.random.PCG64(seeds["policy"])),
            params.collect.first_life_only, args.keep_screens, on_frame=lambda: bar.update())
    env.close()
    write_npz(args.out_frames, arrays, compresslevel=params.collect.compression_level)
    write_npz(args.out_objects, pack_objects(objects), compresslevel=params.collect.compression_level)
    wall_s = time.perf_counter() - start
    counts = category_counts(objects)
    n_steps = int(arrays["steps"][-1]) + 1
    log.info("%s: %d frames over %d agent steps (%d episode starts among them); objects per category %s",
             args.game, len(objects), n_steps, int((~arrays["has_previous"]).sum()), counts)
    write_json(args.out_run, run_record(
        stage="objects",
        params={"atari": to_plain(params.atari), "collect": to_plain(params.collect),
                "criteria": to_plain(params.criteria),
                "objects": {"n_frames": n_frames, "every": every, "ocatari_mode": "ram", "hud": True}},
        wildcards={"game": args.game, "profile": params.experiment.profile},
        seeds=seeds,
        wall_time_s=wall_s,
        extra={"ocatari_version": version("ocatari"), "numpy_version": np.__version__,
               "category_counts": counts, "n_agent_steps": n_steps,
               "n_without_previous": int((~arrays["has_previous"]).sum()),
               "frames_file": str(args.out_frames), "objects_file": str(args.out_objects)},
    ))


if __name__ == "__main__":
    main()
