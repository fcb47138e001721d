"""What every trainer shares: the guard against non-finite updates and the progress printer.

Every trainer (the meta-trainer's truncations and imitation episodes, L2O-Swarm's and
Twin-L2O's truncations, the progressive trainer's steps) applies an update through
:func:`apply_if_finite`: the update runs only when the loss and every gradient are finite,
so the weights keep their last good values, and the caller reports the skip with where it
happened (:func:`report_skip`: the episode and truncation, or the layer, stage, epoch and
step).  Progress lines go through :func:`printer` (``print`` flushed at every line, so a
piped or redirected log shows a long run's progress as it happens).
"""
import functools

import tensorflow as tf


def printer(progress):
    """The trainers' ``say``: ``print`` flushed at every line when ``progress`` is ``print``,
    any other callable as it is, nothing for None."""
    if progress is None:
        return lambda *args, **kwargs: None
    if progress is print:
        return functools.partial(print, flush=True)
    return progress


def all_finite(grads, *values):
    """A scalar boolean tensor: every entry of ``values`` and of the nest ``grads`` (None
    entries ignored) is finite."""
    finite = tf.constant(True)
    for value in values:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(value)))
    for g in tf.nest.flatten(grads):
        if g is not None:
            finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
    return finite


def apply_if_finite(apply, grads, *values):
    """Calls ``apply(grads)`` only when ``values`` (the loss) and ``grads`` are all finite;
    returns that flag (a boolean tensor).  In a ``tf.function`` the test is a ``tf.cond``:
    a skipped update leaves the variables and the optimizer's slots as they were."""
    finite = all_finite(grads, *values)
    if finite:
        apply(grads)
    return finite


def pairs(grads, variables):
    """``(gradient, variable)`` pairs for ``apply_gradients``, None gradients left out."""
    return [(g, v) for g, v in zip(grads, variables) if g is not None]


def report_skip(say, log, tag, what, where, then):
    """Reports a skipped update: ``[tag] WARNING: non-finite <what> at <where>; update
    skipped, <then>`` through ``say`` (a ``print``-like function or None) and appends the
    message to the list ``log``; returns the message."""
    message = f"non-finite {what} at {where}; update skipped, {then}"
    if say is not None:
        say(f"[{tag}] WARNING: {message}")
    if log is not None:
        log.append(message)
    return message
