"""The services' fixtures: a real node offline and its kiosk (tests/helpers/kiosk.py), and
gpiozero's mock pins for the real GPIO driver."""

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from tests.drivers.gpio.fakes import mock_pins
from tests.helpers.kiosk import clock, kiosk, node, nodes

__all__ = ["clock", "kiosk", "node", "nodes"]


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins for the real GPIO driver, fresh for each test."""
    with mock_pins() as mock:
        yield mock
