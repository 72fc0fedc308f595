"""One root error, so callers can catch everything edged raises on purpose.

The root and the errors a driver raises live here, below both `drivers/` and `edged/`;
the node's own errors (commands, the outbox) are in `edged/errors.py`, under the same root.
"""


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
