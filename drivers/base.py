"""The contract between a driver and the core that supervises it."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class DriverOptions(BaseModel):
    """Base of every driver's options: unknown keys are errors, as in the rest of the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DriverContext(Protocol):
    """What a running driver may do: hand events to the core, say it is ready, log."""

    name: str
    log: logging.Logger

    def emit(self, event: Any) -> None:
        """Hand an event to the services; call from the event loop thread only."""

    def emit_threadsafe(self, event: Any) -> None:
        """Hand an event over from a library's own thread (gpiozero, python-can notifier)."""

    def ready(self) -> None:
        """The device answers: the supervisor shows the driver as `running`."""

    def count(self, key: str, n: int = 1) -> None:
        """Bump the health counter `driver.{name}.{key}` (bad checksum, bus error…)."""

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        """Receive events from the services (e.g. `Unlock`, `Feedback` for outputs).

        Handlers run on the event loop thread. They are removed when `run` ends, so a
        restarted driver does not leave its old handlers behind.
        """


@runtime_checkable
class Driver(Protocol):
    """A driver runs until cancelled; raising means it failed and will be restarted."""

    Options: ClassVar[type[DriverOptions]]

    async def run(self, ctx: DriverContext) -> None: ...


class DriverFactory(Protocol):
    Options: type[DriverOptions]

    def __call__(self, options: Any, *, base_dir: Path | None = None) -> Driver: ...
