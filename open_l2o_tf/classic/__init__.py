"""Classic baselines, batched over problem instances and run inside tf.function."""
