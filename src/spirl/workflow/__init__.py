"""Layer 7, the workflow: the stages, the job plan Snakemake and DVC share, and their glue."""
