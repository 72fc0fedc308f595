"""`edged run` on a disk whose last write never returns: the outbox's close blocks for ever
in the outbox's thread, as on an SD card that stopped answering (the kernel keeps the write
waiting). Made here by replacing that one call: a hung block device cannot be made on a
test machine (no dm-delay). Everything else is the real daemon."""

import sys
import threading

from edged.cli.main import main
from edged.outbox.store import Outbox


def _never_returns(self: Outbox) -> None:
    threading.Event().wait()


Outbox._close = _never_returns  # type: ignore[method-assign]

raise SystemExit(main(sys.argv[1:]))
