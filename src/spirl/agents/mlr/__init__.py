"""MLR, masked latent reconstruction (Yu et al. 2022; SPEC §15), as an auxiliary loss of the Rainbow agent, one
concern per module.

Per update, a window of T = 16 consecutive observations o_t..o_{t+15} and their actions a_t..a_{t+15} is drawn from
the replay. The observations are masked by space-time cubes (8 steps share one spatial mask of 7×7 cells), augmented
and encoded by the online encoder; a small transformer over [s_0..s_15, a_0..a_15] predicts the latents of the
unmasked observations, which a one-step-lagged copy of the encoder produces. Both go through the projection g (the
Q-head's first layers), the prediction also through q, and the loss is 2 − 2cos between them.

Modules:
  masking   the cube masks of §15.2 (one draw per update, shared by the batch and the 4 stacked frames).
  augment   shift and intensity (§15.3), per image, from an explicit generator; usable by any agent.
  decoder   the predictive latent decoder of §15.5: action embedding, sinusoid positions, 2 pre-LN blocks.
  loss      the projection g (the Q-head's first layers), the predictor q, the one-step-lagged target copies and
            the 2 − 2cos loss with PER weights (§15.6-15.7).

Windows over the replay are `spirl.agents.replay.PrioritizedReplay.sample(..., window=T)`; the Nature CNN is
`spirl.agents.networks.PixelEncoder` with three layers and `minmax_renorm` its renorm (§15.4).
"""
