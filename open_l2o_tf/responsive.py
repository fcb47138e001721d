"""Long compiled calls that still stop at once on Ctrl-C or SIGTERM.

Python runs a signal handler only between bytecodes of the main thread, so a ``tf.function``
that loops 10,000 steps in one call (a Fig. 8 ConvNet test run: 5-10 minutes on a CPU)
would hold a Ctrl-C until it returns.  :func:`call` runs such a call in a worker thread and
waits for it in short slices, so the main thread takes the signal at once; the command then
prints its one "interrupted at ..." line and exits (:mod:`run.startup`).  The work of the
abandoned call is lost; what was finished before it is in the checkpoints, which are written
atomically.  :func:`abandoned` tells the start-up code that a worker may still be inside
TensorFlow, so it leaves with ``os._exit`` rather than a finalising interpreter.
"""
import threading

_STATE = {"abandoned": False}


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, run in a worker thread while the main thread stays free for
    signals; returns its value or raises its exception.  A KeyboardInterrupt (or the
    start-up's SIGTERM subclass of it) raised in the main thread meanwhile propagates at
    once, leaving the worker behind."""
    box, finished = {}, threading.Event()

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # pylint: disable=broad-except
            box["error"] = err
        finally:
            finished.set()

    # an Event, not Thread.join: a join interrupted by a signal marks a running thread as
    # stopped (CPython bpo-45274's fix), so is_alive() could not be trusted afterwards
    threading.Thread(target=target, name="responsive-call", daemon=True).start()
    try:
        while not finished.wait(0.25):
            pass
    except KeyboardInterrupt:
        if not finished.is_set():
            _STATE["abandoned"] = True
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def abandoned():
    """Whether an interrupt left a :func:`call` running in its worker thread."""
    return _STATE["abandoned"]
