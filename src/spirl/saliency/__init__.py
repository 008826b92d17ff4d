"""Layer 3, saliency: the MAE and its pre-training, error maps from patch surroundings (full and incremental),
dynamic-K selection, mr, the scorer registry (SPEC §13: the MAE's criterion, frame differences, random patches,
Wu et al.'s mask) and object recall of a selection."""
