"""The one exception type for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a wrong shape, a
missing or corrupt file, an unknown name, a bad value).  The message is one line that names
the flag, argument or file, what was expected and what was received.  The command lines in
``run/`` print it as ``error: <message>`` and exit with status 2 instead of showing a
traceback.
"""
import contextlib


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



@contextlib.contextmanager
def unreadable_progress(path, ckpt_dir):
    """``with unreadable_progress(path, ckpt_dir): trainer._load_progress(progress)``: a
    checkpoint whose progress parses but holds a field of the wrong type or shape (edited
    by hand, or from another program) becomes one :class:`UserError` naming the file,
    not a traceback from deep in the trainer."""
    try:
        yield
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise UserError(f"checkpoint {path} holds a progress record this version cannot use "
                        f"({type(err).__name__}: {err}); delete {ckpt_dir} to start over") \
            from None
