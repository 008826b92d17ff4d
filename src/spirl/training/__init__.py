"""Layer 5, training: the loop that steps environments, fills the replay and updates agents, and the lock-step
evaluation, both resumable from checkpoints."""
