"""The options of the Safe-L2O safeguard, checked without TensorFlow (the command lines
validate their flags before importing it); see :mod:`open_l2o_tf.safeguard`."""
from open_l2o_tf.errors import UserError, require

RULES = ("ema", "geometric", "arithmetic", "recent", "recent_max")
ENERGIES = ("residual", "objective")
TRACKS = ("all", "accepted")
SHADOWS = ("best", "strict", "off")


def check_shadow(shadow):
    """The shadow option of :class:`open_l2o_tf.safeguard.Safeguard` (one of
    :data:`SHADOWS`; ``True``/``False`` mean ``best``/``off``)."""
    if shadow is True:
        return "best"
    if shadow is False or shadow is None:
        return "off"
    if shadow not in SHADOWS:
        raise UserError(f"safeguard shadow must be one of {', '.join(SHADOWS)}, got {shadow!r}")
    return shadow
DEFAULT_PARAM = {"ema": 0.3, "geometric": None, "arithmetic": None, "recent": None,
                 "recent_max": 3}


def check_rule_options(kind, delta, param, track):
    """Returns ``(kind, delta, param, track)`` with ``param``'s default filled in; raises
    :class:`UserError` for an unknown rule/track or an out-of-range value."""
    if kind not in RULES:
        raise UserError(f"safeguard rule must be one of {', '.join(RULES)}, got {kind!r}")
    require(track in TRACKS, f"safeguard track must be one of {', '.join(TRACKS)}, "
            f"got {track!r}")
    delta = float(delta)
    require(0.0 <= delta < 1.0, f"safeguard delta must be in [0, 1), got {delta}")
    if param is None:
        param = DEFAULT_PARAM[kind]
        if kind == "geometric":
            param = delta if delta > 0 else 0.01
    if kind == "ema":
        require(0.0 < float(param) <= 1.0,
                f"safeguard param (EMA weight) must be in (0, 1], got {param}")
    elif kind == "geometric":
        require(0.0 < float(param) < 1.0,
                f"safeguard param (geometric factor) must be in (0, 1), got {param}")
    elif kind == "recent_max":
        require(float(param) == int(param) and int(param) >= 1,
                f"safeguard param (recent_max window) must be a positive integer, got {param}")
        param = int(param)
    if param is not None and kind != "recent_max":
        param = float(param)
    return kind, delta, param, track
