"""IANA zone names in the config, on a system that may lack the zone database."""

from collections.abc import Iterator

import pytest

from core.zones import check_zone
from tests.helpers.zones import no_zone_database as without_tzdata


@pytest.fixture
def no_zone_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with without_tzdata(monkeypatch):
        yield


def test_an_unknown_zone_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus'.*Europe/Paris"):
        check_zone("Mars/Olympus")


def test_without_a_zone_database_the_refusal_says_to_install_tzdata(no_zone_database: None) -> None:
    """On an image without tzdata every zone is unknown: "unknown time zone 'Europe/Paris':
    use an IANA name such as Europe/Paris" sent the installer hunting for a typo."""
    with pytest.raises(ValueError) as info:
        check_zone("Europe/Paris")
    assert "tzdata" in str(info.value) and "such as Europe/Paris" not in str(info.value)
