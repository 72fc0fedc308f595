"""What `edged run` writes to the journal, in-process: its own logging set up as `edged run`
sets it up (`edged.logs.setup_logging`), writing to a buffer instead of stderr.

Every line of it is one journal entry (a traceback is as many entries as it has lines),
which is what journald counts against the service's rate limit. pytest's own log capture
(`caplog`) goes on beside it and sees every record, as before."""

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

from edged.logs import setup_logging

FEW = 10
"""What a flood may leave in the journal per problem in its first minute: its first lines
(`edged.logs.BURST`), the rest held back for the summary at the minute's end."""
QUIETED = ("mqtt", "amqtt", "transitions")
"""Loggers `setup_logging` sets a level on: put back as they were."""


class Journal:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def with_(self, text: str) -> list[str]:
        """The lines holding `text`."""
        return [line for line in self.lines if text in line]

    @property
    def text(self) -> str:
        if isinstance(self.stream, io.StringIO):
            return self.stream.getvalue()
        self.stream.flush()
        with open(self.stream.fileno(), closefd=False) as again:
            again.seek(0)
            return again.read()


@contextlib.contextmanager
def daemon_logging(verbose: bool = False, stream: TextIO | None = None) -> Iterator[Journal]:
    """`stream`: what stands for stderr (a file, to be the journal's stream: systemd names
    it by device and inode); by default a buffer."""
    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in QUIETED}
    stream = io.StringIO() if stream is None else stream
    root.handlers = []  # basicConfig configures only a root without handlers, as in edged run
    stderr, sys.stderr = sys.stderr, stream
    try:
        setup_logging(verbose)
    finally:
        sys.stderr = stderr
    ours = [h for h in root.handlers if h not in kept]
    root.handlers = kept + ours
    try:
        yield Journal(stream)
    finally:
        for handler in ours:
            root.removeHandler(handler)
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)
