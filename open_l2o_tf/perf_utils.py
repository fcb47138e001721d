"""Timing helpers for ``run.perf``: medians of repeated calls and the machine's matmul rate."""
import time

import numpy as np
import tensorflow as tf


def median_time(fn, repeats=20, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_flops(size=1024, repeats=10):
    """Measured float32 matmul throughput (FLOP/s) of this machine, now."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    seconds = median_time(lambda: f().numpy(), repeats)
    return 2.0 * size ** 3 / seconds
