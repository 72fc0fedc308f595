"""Which clock stamps a payload: asked of the kernel, or of the caller in tests."""

import time
from datetime import UTC, datetime, timedelta

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


def test_a_fix_that_agrees_says_the_unsynchronised_clock_is_right() -> None:
    clock = Clock(kernel_synced=lambda: False)
    assert clock.system_clock_right() is None  # nothing says, yet
    clock.discipline(datetime.now(UTC) + timedelta(minutes=5))
    assert clock.system_clock_right() is True
    assert "not synchronised; GPS agrees" in clock.describe()


def test_a_fix_far_ahead_says_the_clock_is_wrong_and_by_how_much() -> None:
    clock = Clock(kernel_synced=lambda: True)
    clock.discipline(datetime.now(UTC) + timedelta(days=400))
    assert clock.system_clock_right() is False
    assert "400 days later" in clock.describe()


def test_a_synchronised_clock_without_a_fix_is_believed() -> None:
    clock = Clock(kernel_synced=lambda: True)
    assert clock.system_clock_right() is True
    assert clock.describe().endswith(", synchronised")


def test_a_clock_before_any_plausible_date_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(kernel_synced=lambda: True)
    monkeypatch.setattr(time, "time", lambda: 86400.0)  # a Pi booted in 1970
    assert clock.system_clock_right() is False
    assert "it says 1970-01-02 00:00 UTC" in clock.describe()
