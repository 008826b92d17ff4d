"""Layer 6, reporting: run records read back, statistics with bootstrap intervals, the paper's tables beside the
paper's numbers, figures and the report."""
