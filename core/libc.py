"""The C library, for the few calls Python has no wrapper for (`mlock`, `adjtimex`).

`ctypes.CDLL(None)` opens the process itself, whose interpreter is linked to the C library:
its symbols are there, and nothing is searched. Not `ctypes.util.find_library("c")`: on
Linux that runs `/sbin/ldconfig -p` in a child process and reads its whole output with a
regular expression, at each call: at every start (the journal), and once a minute on a node
that does not trust the system clock (the clock's synchronisation check), a fork of a
50 MB process each time on a Pi Zero.
"""

import ctypes

LIBC = ctypes.CDLL(None, use_errno=True)

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


def kernel_clock_synced() -> bool | None:
    """True/False from adjtimex(2); None where it cannot be asked."""
    try:
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = LIBC.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)
