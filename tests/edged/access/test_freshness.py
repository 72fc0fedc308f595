"""The lists' age, judged on a lower bound of the time that no clock setting moves back."""

from datetime import UTC, datetime
from typing import Any

from edged.access.freshness import STATE_KEY, ListsAge
from edged.access.lasttrusted import Reading
from edged.access.lists import AccessLists

ISSUED = datetime(2026, 12, 1, 8, tzinfo=UTC)
EXPIRES = datetime(2026, 12, 8, 8, tzinfo=UTC)
DAY_MS = 86_400_000
ISSUED_MS = int(ISSUED.timestamp() * 1000)
EXPIRES_MS = int(EXPIRES.timestamp() * 1000)
WEEK_S = 7 * 86_400.0


def lists(**validity: Any) -> AccessLists:
    return AccessLists(fleet="creuse", version=4, **validity)


DATED = lists(issued=ISSUED, expires=EXPIRES)


class Mono:
    """A monotonic clock the test moves."""

    def __init__(self, at: float = 1000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def age_of(
    state: dict[str, Any], mono: Mono, boot: str = "boot-1", save_every_s: float = 600
) -> ListsAge:
    return ListsAge(
        state.get, state.__setitem__, boot=boot, monotonic=mono, save_every_s=save_every_s
    )


def taken(state: dict[str, Any], mono: Mono, reading: Reading) -> ListsAge:
    age = age_of(state, mono)
    age.taken(4, (reading.ms or 0, "ntp" if reading.trusted else "unsynced"), reading)
    return age


NO_CLOCK = Reading(None, False)


def test_lists_without_expires_never_expire() -> None:
    mono = Mono()
    age = taken({}, mono, Reading(ISSUED_MS, True))
    mono.at += 10 * 365 * 86_400
    assert not age.age(lists(), Reading(ISSUED_MS + 3650 * DAY_MS, True)).expired


def test_a_trusted_time_past_expires_proves_them_expired() -> None:
    age = taken({}, Mono(), Reading(ISSUED_MS, True))
    assert not age.age(DATED, Reading(EXPIRES_MS, True)).expired
    assert age.age(DATED, Reading(EXPIRES_MS + 1, True)).expired


def test_lists_held_past_their_validity_expire_without_any_clock() -> None:
    mono = Mono()
    age = taken({}, mono, NO_CLOCK)
    mono.at += WEEK_S - 1
    assert not age.age(DATED, NO_CLOCK).expired
    mono.at += 2
    assert age.age(DATED, NO_CLOCK).expired


def test_a_clock_set_back_does_not_make_expired_lists_fresh() -> None:
    mono = Mono()
    age = taken({}, mono, Reading(ISSUED_MS, True))
    mono.at += WEEK_S + 60
    assert age.age(DATED, Reading(ISSUED_MS, True)).expired, "trusted, set back a week"


def test_a_clock_set_back_before_they_came_does_not_make_them_fresh_either() -> None:
    """The bound the node had when it took them counts with the time held since."""
    mono = Mono()
    age = taken({}, mono, Reading(EXPIRES_MS - 1000, True))
    mono.at += 2
    assert age.age(lists(expires=EXPIRES), Reading(ISSUED_MS, True)).expired


def test_the_age_is_at_least_the_time_held() -> None:
    mono = Mono()
    age = taken({}, mono, NO_CLOCK)
    mono.at += 3600
    now = age.age(DATED, NO_CLOCK)
    assert now.held_s == 3600 and now.age_s == 3600


def test_the_time_held_goes_on_across_a_restart_within_a_boot() -> None:
    state: dict[str, Any] = {}
    mono = Mono()
    taken(state, mono, NO_CLOCK)
    mono.at += WEEK_S + 1  # the daemon restarts: nothing was saved since the take
    again = age_of(state, mono)
    again.restore(4)
    assert again.age(DATED, NO_CLOCK).expired


def test_after_a_reboot_the_time_held_is_the_stored_one() -> None:
    """Time powered off is not counted: the bound is late, never early."""
    state: dict[str, Any] = {}
    mono = Mono()
    age = taken(state, mono, NO_CLOCK)
    mono.at += 3 * 86_400
    age.age(DATED, NO_CLOCK)  # saved: moved more than save_every_s
    rebooted = age_of(state, Mono(5.0), boot="boot-2")
    rebooted.restore(4)
    assert rebooted.held_ms() == 3 * DAY_MS


def test_the_time_held_is_saved_at_most_every_save_every_s() -> None:
    state: dict[str, Any] = {}
    mono = Mono()
    age = taken(state, mono, NO_CLOCK)
    mono.at += 599
    age.age(DATED, NO_CLOCK)
    assert state[STATE_KEY]["held_ms"] == 0
    mono.at += 2
    age.age(DATED, NO_CLOCK)
    assert state[STATE_KEY]["held_ms"] == 601_000


def test_the_time_held_for_other_lists_is_not_carried_to_those_in_force() -> None:
    state: dict[str, Any] = {}
    mono = Mono()
    taken(state, mono, NO_CLOCK)
    mono.at += WEEK_S + 1
    other = age_of(state, mono)
    other.restore(5)
    assert other.held_ms() == 0


def test_a_damaged_stored_time_held_counts_from_now() -> None:
    state: dict[str, Any] = {STATE_KEY: {"version": 4, "held_ms": "lots", "boot": "boot-1"}}
    age = age_of(state, Mono())
    age.restore(4)
    assert age.held_ms() == 0
