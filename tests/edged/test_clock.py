"""Which clock stamps a payload: asked of the kernel, or of the caller in tests."""

import pytest

import edged.clock
from edged.clock import Clock, ClockSource
from tests.helpers.host import TestHost


def test_a_clock_the_kernel_says_is_synchronised_is_ntp() -> None:
    assert Clock(kernel_synced=lambda: True).source is ClockSource.NTP


def test_a_clock_the_kernel_says_is_not_synchronised_is_unsynced() -> None:
    assert Clock(kernel_synced=lambda: False).source is ClockSource.UNSYNCED


def test_a_clock_that_cannot_ask_the_kernel_is_unsynced() -> None:
    assert Clock(kernel_synced=lambda: None).source is ClockSource.UNSYNCED


def test_by_default_a_clock_asks_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edged.clock, "kernel_clock_synced", lambda: True)
    assert Clock().source is ClockSource.NTP


def test_a_test_host_is_unsynced_on_a_machine_whose_ntp_is_synchronised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edged.clock, "kernel_clock_synced", lambda: True)
    assert TestHost().clock.source is ClockSource.UNSYNCED
    assert TestHost(synced=True).clock.source is ClockSource.NTP
