"""One root error, so callers can catch everything edged raises on purpose."""


class EdgedError(Exception):
    """Root of every error edged raises deliberately."""


class ConfigError(EdgedError):
    """The configuration cannot be used; the message lists every problem with its key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


class DriverError(EdgedError):
    """A driver failed; the supervisor restarts it with backoff."""


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
