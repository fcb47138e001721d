"""Where a run is, for the line printed when it is interrupted.

The trainers call :func:`set` as they go ("layer 2 stage 1 epoch 7", "episode 40/100");
the command's start-up reads :func:`get` when SIGINT or SIGTERM stops the run, so the user
sees where it stopped: ``interrupted at layer 2 stage 1 epoch 7 (SIGINT); re-run the same
command to resume``.  One process runs one command, so a module-level value suffices.
"""

_WHERE = {"text": ""}


def set(text):  # pylint: disable=redefined-builtin
    """Records where the run is now (a short phrase; "" for nowhere in particular)."""
    _WHERE["text"] = str(text)


def get():
    """The last phrase given to :func:`set` ("" before any)."""
    return _WHERE["text"]


def clear():
    set("")
