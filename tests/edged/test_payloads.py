"""Payload bodies: what every producer of a topic gets for free from its model."""

from hypothesis import given
from hypothesis import strategies as st

from edged.payloads import ERROR_TEXT_MAX, DriverStatus, MqttHealth


@given(st.text(min_size=0, max_size=3 * ERROR_TEXT_MAX))
def test_an_error_in_link_health_is_at_most_the_bound_and_kept_whole_when_short(
    text: str,
) -> None:
    said = MqttHealth(protocol="5", fallback=False, last_error=text).last_error or ""
    assert len(said) <= ERROR_TEXT_MAX
    assert said == text if len(text) <= ERROR_TEXT_MAX else said[:-1] == text[: len(said) - 1]


def test_a_drivers_error_cut_short_says_so() -> None:
    said = DriverStatus(name="gps", driver="gps.sim", state="backoff", last_error="e" * 10_000)
    assert said.last_error == "e" * (ERROR_TEXT_MAX - 1) + "…"
