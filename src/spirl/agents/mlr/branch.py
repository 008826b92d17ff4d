"""The MLR branch of an agent's update (SPEC §15.1-15.8): windows -> masked latents -> decoder -> g, q -> loss.

One update, given a window of T observations o_t..o_{t+T-1} [B, T, F, 84, 84] (uint8) and their actions:
  1. one cube mask per update (shared by the batch and the F stacked frames), applied to the raw observations
     (`mlr.masked_scale`: the released code's 0-255 stream, or 0-1);
  2. every masked image augmented (shift, intensity) and encoded by the online encoder, then renormalised
     (`mlr.renorm`): masked latents [B, T, d];
  3. the decoder predicts [B, T, d] from them and the actions; ŷ = q(g(prediction));
  4. the unmasked observations, augmented again (independently), through the target encoder, renorm and g_target
     under no_grad: ȳ; the target is the one-step-lagged copy (`mlr.target_lag: one_step`) or the online networks;
  5. L_MLR = mean_(b,t) w_b·(2 − 2cos(ŷ, ȳ)) (`mlr.window_end: mask` zeroes steps from the window's first terminal);
  6. with the one-step lag, the target copy takes the online weights now, after the forward, before the step.

Randomness: the masks from the branch's numpy generator, its augmentations from its torch generator; neither is
shared with the RL path, so an agent with the loss computed at λ = 0 updates exactly as one without the branch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spirl.agents.mlr.augment import augment
from spirl.agents.mlr.decoder import PredictiveLatentDecoder
from spirl.agents.mlr.loss import Predictor, TargetBranch, mlr_loss, projection
from spirl.agents.mlr.masking import apply_masks, draw_masks
from spirl.agents.networks import minmax_renorm
from spirl.params import MLRParams


class MLRBranch(nn.Module):
    """Decoder, predictor q and target copies of one agent, with the branch's own random streams.

    The online network it reads is passed to each call (it is the agent's, trained by the same optimiser): it must
    have `encoder` (a pixel CNN with `output_size`) and `head` (the dueling C51 head whose first layers are g).
    """

    def __init__(self, network: nn.Module, settings: MLRParams, n_actions: int, seed: int,
                 generator: torch.Generator) -> None:
        """Args: network, the agent's online Q-network; settings, the `mlr` section; n_actions; seed of the mask and
        augmentation streams; generator, the draws of the decoder's and q's initial weights."""
        super().__init__()
        self.settings = settings
        d = network.encoder.output_size
        self.decoder = PredictiveLatentDecoder(d, n_actions, settings.decoder_blocks, settings.decoder_mlp_ratio,
                                               generator=generator)
        self.predictor = Predictor(2 * network.head.value_hidden.out_features, generator=generator)
        self.target = TargetBranch(network.encoder, network.head)
        self.mask_rng = np.random.Generator(np.random.PCG64(seed))
        self.augment_rng = torch.Generator().manual_seed(seed)
        self.last_cosine = torch.tensor(float("nan"))  # of the latest update (`loss`)

    def _latents(self, encoder: nn.Module, images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Augmented images [B·T, F, H, W] -> encoder -> renorm (if set) -> [B, T, d]."""
        latent = encoder(augment(images, self.augment_rng))  # [B·T, d]
        if self.settings.renorm:
            latent = minmax_renorm(latent)
        return latent.view(*shape, -1)

    def loss(self, network: nn.Module, obs: torch.Tensor, actions: torch.Tensor, alive: torch.Tensor,
             weights: torch.Tensor) -> torch.Tensor:
        """L_MLR of one update (module docstring, steps 1-5). Call `after_forward` once the total loss is formed.

        Args: obs [B, T, F, H, W] uint8 windows; actions [B, T] int; alive [B, T] bool (steps before the first
        terminal); weights [B] PER weights. Returns: scalar.
        """
        s = self.settings
        b, t, _, height, _ = obs.shape
        if t != s.window:
            raise ValueError(f"window of {t} steps, mlr.window is {s.window}")
        masks = draw_masks(self.mask_rng, t, s.cube_depth, s.mask_ratio, height, s.mask_cell_px, obs.device)
        masked = apply_masks(obs, masks.to(network.encoder.conv1.weight.dtype), s.masked_scale)  # [B, T, F, H, W]
        states = self._latents(network.encoder, masked.flatten(0, 1), (b, t))  # [B, T, d]
        predicted = self.predictor(projection(network.head, self.decoder(states, actions)))  # [B, T, 2h]
        with torch.no_grad():
            clean = obs.flatten(0, 1).to(masked.dtype) / 255.0  # [B·T, F, H, W] on 0-1
            if s.target_lag == "one_step":
                target = self.target.project(self._latents(self.target.encoder, clean, (b, t)))
            else:
                target = projection(network.head, self._latents(network.encoder, clean, (b, t)))
        with torch.no_grad():  # the mean cosine of ŷ and ȳ over the window, unweighted: what the loss drives to 1
            self.last_cosine = nn.functional.cosine_similarity(predicted, target, dim=-1).mean()
        return mlr_loss(predicted, target, weights, alive if s.window_end == "mask" else None)

    def after_forward(self, network: nn.Module) -> None:
        """The one-step lag: the target copies take the online weights, before the optimiser step."""
        if self.settings.target_lag == "one_step":
            self.target.sync(network.encoder, network.head)

    def clip_groups(self, network: nn.Module) -> dict[str, list[nn.Parameter]]:
        """SPEC §15.8's two clipping groups: the encoder and the Q-head (g included), and the decoder's blocks; the
        action embedding and q stay unclipped."""
        return {"encoder_and_head": [*network.encoder.parameters(), *network.head.parameters()],
                "transformer": list(self.decoder.blocks.parameters())}
