"""Sizes that cannot fit: the memory a command will need, estimated from its sizes before it
allocates anything, against the memory of this machine.

A command whose estimate exceeds the memory available is refused at once in one line
naming the flag, the estimate with its largest parts, and the machine's memory, instead
of ending in an out-of-memory error (TensorFlow's ``ResourceExhaustedError``, or the
kernel's OOM killer) after minutes of work.  The estimates are of the arrays the command
holds at its peak (float32 unless said otherwise); they are meant to be right within a
small factor, which is all a refusal of a size 10-1000x too large needs.
"""
import os

from open_l2o_tf.errors import UserError

GIB = float(1 << 30)
ENV = "OPEN_L2O_MEMORY_BYTES"     # overrides the machine's available memory (tests)


def machine_memory():
    """``(available, total)`` bytes: ``MemAvailable`` / ``MemTotal`` of /proc/meminfo, else
    ``os.sysconf`` (physical pages; available = total).  ``$OPEN_L2O_MEMORY_BYTES``
    replaces both (tests, or a share of a machine)."""
    if os.environ.get(ENV):
        value = int(float(os.environ[ENV]))
        return value, value
    info = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = info.get("MemTotal")
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None, None
    return info.get("MemAvailable", total), total


def gib(nbytes):
    """``nbytes`` as ``"412 GiB"`` / ``"1.5 GiB"`` / ``"0.02 GiB"``."""
    value = nbytes / GIB
    if value >= 10:
        return f"{value:.0f} GiB"
    return f"{value:.1f} GiB" if value >= 0.1 else f"{value:.2g} GiB"


def check_fits(flag_text, parts, what="needs"):
    """Refuses (:class:`UserError`) when the bytes of ``parts`` (``{name: bytes}``, the
    largest named in the message) exceed the machine's available memory::

        error: --num_layers=100000 needs about 412 GiB (model 390 GiB, ...) but this machine
        has 23 GiB available (31 GiB in all)

    ``flag_text``: the flags that set the size (e.g. ``--m=100000 --n=200000``).  Returns
    the estimate (bytes)."""
    total = float(sum(parts.values()))
    available, machine = machine_memory()
    if available is None or total <= available:
        return total
    shown = sorted(((v, k) for k, v in parts.items() if v > 0), reverse=True)[:3]
    detail = ", ".join(f"{name} {gib(value)}" for value, name in shown)
    raise UserError(f"{flag_text} {what} about {gib(total)} ({detail}) but this machine has "
                    f"{gib(available)} available ({gib(machine)} in all); choose smaller "
                    f"sizes")
