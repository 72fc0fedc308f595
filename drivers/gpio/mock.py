"""The mock pin factory of `pin_factory = "mock"` (the demo, the rig, the tests): imported by
the GPIO driver only when a config asks for it, so a node on a Pi never loads gpiozero's
mock pins (nor the rig's control socket, `drivers.gpio.mockwire`)."""

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

_shared_mock: MockFactory | None = None

MOCK_HISTORY = 1000
"""Changes each pin of the process's own mock factory remembers (`ShortHistoryPin`)."""


class ShortHistoryPin(MockPin):  # type: ignore[misc]
    """A MockPin that keeps its last `MOCK_HISTORY` changes in `states`, not all of them:
    gpiozero's keeps every change (for a test's timeline), and a demo or rig node that runs
    for weeks grew by ~80 bytes a change (a tap every 20 s blinks the LEDs and beeps: about
    2.7 MB a day). `states` stays a list, as gpiozero's tools and the benchmarks read it
    (sliced): past MOCK_HISTORY changes the oldest are dropped."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and len(self.states) > MOCK_HISTORY:
            del self.states[: len(self.states) - MOCK_HISTORY]
        return changed


def mock_factory() -> MockFactory:
    """The MockFactory the mock board uses: gpiozero's own if a test installed one
    (`Device.pin_factory = MockFactory()`, then `Device.pin_factory.pin(17).drive_low()`),
    else one for the process, so a restarted driver finds the levels it left."""
    global _shared_mock
    if isinstance(Device.pin_factory, MockFactory):
        return Device.pin_factory
    if _shared_mock is None:
        _shared_mock = MockFactory(pin_class=ShortHistoryPin)
    return _shared_mock
