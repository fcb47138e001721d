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


def matmul_rates(size=1024, repeats=5):
    """``matmul_rates()() -> (FLOP/s, FLOP per CPU second)``: the float32 matmul throughput
    in wall time (median of ``repeats`` calls) and in this process's CPU time (over the
    same calls); the returned function measures both now, compiled once."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    f().numpy()

    def measure():
        cpu_start = time.process_time()
        seconds = median_time(lambda: f().numpy(), repeats, warmup=0)
        cpu = (time.process_time() - cpu_start) / repeats
        return 2.0 * size ** 3 / seconds, 2.0 * size ** 3 / cpu
    return measure
