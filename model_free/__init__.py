"""Model-free L2O: learned update rules and the truncated-BPTT meta-trainer."""
