"""Layer 2, the environment: the Atari wrapper (SPEC §1), random-policy frame collection and OCAtari's object
boxes (SPEC §14)."""
