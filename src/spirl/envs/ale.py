"""The Arcade Learning Environment as SPIRL configures it: ROM lookup, seeding, construction.

`make_ale` gives an emulator without sticky actions or internal frame skip (the wrapper
`spirl.envs.atari.AtariEnv` repeats actions itself); `derive_seeds` splits one env seed into the
emulator's seed and the generator of the no-op counts at a reset.
"""

from __future__ import annotations

import re

import numpy as np
from ale_py import ALEInterface, LoggerMode, roms


def rom_id(game: str) -> str:
    """Convert a CamelCase game name to its ALE ROM id ("MsPacman" -> "ms_pacman").

    Args:
        game: game name such as "Frostbite" or "BattleZone"; a ROM id is accepted too.
    Returns:
        the snake_case ROM id known to ``ale_py.roms``.
    Raises:
        ValueError: the game has no bundled ROM; the message lists the allowed ids.
    """
    rid = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", game).lower()
    allowed = roms.get_all_rom_ids()
    if rid not in allowed:
        raise ValueError(
            f"unknown Atari game {game!r} (ROM id {rid!r}); allowed ROM ids: "
            + ", ".join(sorted(allowed))
        )
    return rid


def derive_seeds(seed: int) -> tuple[int, np.random.Generator]:
    """Split one env seed into the ALE seed and the no-op count generator.

    Args:
        seed: non-negative integer seed of the env.
    Returns:
        (ale_seed in [0, 2**31), numpy Generator used for the no-op counts).
    """
    child_ale, child_noop = np.random.SeedSequence(seed).spawn(2)
    ale_seed = int(child_ale.generate_state(1, np.uint32)[0] % 2**31)
    return ale_seed, np.random.Generator(np.random.PCG64(child_noop))


def make_ale(rom: str, ale_seed: int) -> ALEInterface:
    """Create an ALE with the SPIRL settings: no sticky actions, no internal frame skip.

    Args:
        rom: ROM id, e.g. "frostbite".
        ale_seed: value for ALE's ``random_seed``.
    Returns:
        an ``ALEInterface`` with the ROM loaded.
    """
    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", ale_seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.loadROM(roms.get_rom_path(rom))
    return ale
