"""Self-supervised attention mask of Wu, Khetarpal & Precup (SPEC §13, scorer `wu_mask`), one concern per module.

A feature encoder Φ and a mask generator Ψ read one grayscale 84×84 frame in [0, 1]. To rebuild a target frame x_t,
the decoder gets the source frame's features where neither frame is marked salient and the target's own features
where the target is marked salient:

    Φ̂ = (1 − Ψ(x_s))·(1 − Ψ(x_t))·Φ(x_s) + Ψ(x_t)·Φ(x_t),   Φ(x_s), Ψ(x_s) detached.

A sparsity penalty on Ψ(x_t) keeps the mask off whatever the source frame already explains (the static background),
so Ψ learns to mark what changes between frames of an episode: the moving objects.

Shapes (84×84 input): Φ, Ψ convs 84 → 20 → 9 → 7; Φ(x) [B, 32, 7, 7], Ψ(x) [B, 1, 7, 7]; decoder 7 → 9 → 20 → 84.

Modules:
  model     the network (WuAttention), the transport and the loss (WuSettings, wu_loss).
  data      the network's input (gray frames) and the sampling of (source, target) training pairs.
  scores    Ψ placed on the frame through each cell's 36-pixel block and pooled onto SPIRL's patches: the
            `wu_mask` scores (patch_scores).
  training  the offline run of the pretrain_wu stage: seeds, update counts, train_until, a fingerprinted resumable
            run (WuRun, spirl.common.checkpoints) and the trained model's file (save_model / load_model, .npz).
  figures   the loss curve and Ψ on real frames.

Training here is offline on a game's random-policy frames (the released code trains online beside A2C: a
deviation, SPEC §13). Every random draw (init, pair sampling) comes from explicit torch.Generators.
"""
