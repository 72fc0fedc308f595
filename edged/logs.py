"""Logging to stderr: under systemd the journal adds the timestamps, elsewhere we do."""

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journal
        else ("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    # aiomqtt logs one line per publish past its pending-call threshold; we bound the window
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
