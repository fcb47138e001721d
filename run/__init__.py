"""Command lines, one per test (absl flags).  Quiet TensorFlow's C++ start-up logs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
