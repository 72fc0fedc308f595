"""NFC readers: they emit `core.events.Tap`, one per card presentation."""

import os

LOG_LEVEL_ENV = "LIBNFC_LOG_LEVEL"
"""libnfc's own log level (0 none, 1 errors, 3 debug), read by each nfc_init: 0 unless set."""


def quiet_libnfc() -> None:
    """Turn libnfc's own log off unless the operator set a level (debugging a reader).

    libnfc writes an error line to stderr (the journal) for every bad frame, a line per poll
    from a flaky reader; `nfc.libnfc` logs each problem itself, with nfc_strerror. Call it on
    the main thread before any thread starts: glibc's setenv is not safe against a getenv
    in another thread (libnfc's nfc_init, localtime's TZ), so edged's entry point calls it
    first thing, and `drivers.nfc.libnfc`'s import for any other host of the driver. Once
    the variable is set, calling it again writes nothing."""
    os.environ.setdefault(LOG_LEVEL_ENV, "0")
