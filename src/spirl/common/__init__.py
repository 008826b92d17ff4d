"""Layer 1, shared utilities: atomic files, seeds, command lines, run records, the torch runtime, checkpoints and
figure helpers. Imports only the parameter model."""
