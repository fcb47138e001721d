"""Command lines: one absl-flag entry point per test (``python -m run.<test>``)."""
