"""The models a scorer of SPEC §13 scores with, loaded for a job from the files the job reads.

Every scorer needs the game's trained MAE (its patch grid; the error map of the paper's scorer), --in-model. A scorer
that scores with the untrained MAE gets it built here (spirl.saliency.pretrain.untrained_mae: the same architecture
and init seed); one that scores with Wu et al.'s mask reads the game's trained mask, --in-wu. A missing input is a
ConfigError naming the option.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spirl.params import ConfigError, Params
from spirl.saliency.error_maps import error_map_settings
from spirl.saliency.mae import MaskedAutoencoder
from spirl.saliency.pretrain import load_model, untrained_mae
from spirl.saliency.registry import ScorerSpec
from spirl.saliency.scorers.base import ScorerModels
from spirl.saliency.wu.training import load_model as load_wu


def scorer_models(spec: ScorerSpec, params: Params, game: str, mae: MaskedAutoencoder,
                  wu_path: Path | None = None) -> ScorerModels:
    """The models `spec` scores with, beside the game's trained MAE `mae` (already loaded), on the MAE's device.

    Args: params the job's (resolved) params: error-map settings, saliency.incremental, the untrained MAE's mae
        section; game the game (the untrained MAE's init seed); wu_path the game's Wu mask model.npz, read only if
        the scorer needs it.
    Raises: ConfigError naming --in-wu when the scorer needs the Wu mask and wu_path is None.
    """
    device = next(mae.parameters()).device
    untrained = untrained_mae(params.mae, game, mae.config.img_size, device) if spec.needs_untrained_mae else None
    wu = None
    if spec.needs_wu:
        if wu_path is None:
            raise ConfigError(f"scorer {spec.name!r} scores with the game's trained Wu mask: --in-wu is missing "
                              "(the model.npz of the game's pretrain_wu stage)")
        wu = load_wu(wu_path, device)
    return ScorerModels(mae, error_map_settings(params, mae), params.saliency.incremental, untrained, wu)


def load_scorer_models(spec: ScorerSpec, params: Params, game: str, mae_path: Path | None, wu_path: Path | None,
                       device: torch.device | str) -> ScorerModels:
    """scorer_models with the game's trained MAE read from mae_path (--in-model) onto `device`.

    Raises: ConfigError naming --in-model (mae_path None) or --in-wu (see scorer_models).
    """
    if mae_path is None:
        raise ConfigError(f"scorer {spec.name!r} needs the game's trained MAE (its patch grid): --in-model is missing")
    return scorer_models(spec, params, game, load_model(mae_path, device), wu_path)
