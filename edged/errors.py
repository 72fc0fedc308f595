"""The node's own errors, under the one root (`core.errors.EdgedError`)."""

from core.errors import EdgedError


class OutboxFullError(EdgedError):
    """The outbox is at its hard cap and refused a message; an alarm has been raised."""


class CommandError(EdgedError):
    """A command cannot be carried out; `code` is the machine-readable reason for the reply."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class NotDurableError(EdgedError):
    """The disk refused the write: the message is kept in memory, sent while the link holds,
    and lost if the process stops first (`alarm/outbox_full` says the disk refuses writes)."""
