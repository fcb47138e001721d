"""The one exception type for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a wrong shape, a
missing or corrupt file, an unknown name, a bad value).  The message is one line that names
the flag, argument or file, what was expected and what was received.  The command lines in
``run/`` print it as ``error: <message>`` and exit with status 2 instead of showing a
traceback.
"""


class UserError(ValueError):
    """A mistake in the user's input, reported as a single clear line."""


def require(condition, message):
    """Raises ``UserError(message)`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)


def require_positive_int(value, name):
    """Checks that ``value`` is an int > 0; ``name`` is the flag/argument to blame."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


class unreadable_progress:  # pylint: disable=invalid-name
    """``with unreadable_progress(path, ckpt_dir): trainer._load_progress(progress)``: a
    checkpoint whose progress parses but holds a field of the wrong type or shape (edited
    by hand, or from another program) becomes one :class:`UserError` naming the file,
    not a traceback from deep in the trainer."""

    def __init__(self, path, ckpt_dir):
        self.path, self.ckpt_dir = path, ckpt_dir

    def __enter__(self):
        return self

    def __exit__(self, kind, err, _tb):
        if kind is None or issubclass(kind, UserError):
            return False
        if issubclass(kind, (KeyError, TypeError, ValueError, AttributeError, IndexError)):
            raise UserError(f"checkpoint {self.path} holds a progress record this version "
                            f"cannot use ({kind.__name__}: {err}); delete {self.ckpt_dir} to "
                            "start over") from None
        return False
