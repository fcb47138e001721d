"""Model-based L2O: unrolled networks (the LISTA family) and the progressive trainer."""
