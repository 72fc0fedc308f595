"""`[services.kiosk]`: safe defaults, and mistakes named with their key."""

import tomllib

import pytest
from pydantic import ValidationError

from edged.config.kiosk import KioskConfig
from tests.helpers.nodes import ROOT


def test_by_default_the_page_listens_on_loopback_only() -> None:
    c = KioskConfig()
    assert (c.host, c.port, c.enabled) == ("127.0.0.1", 8080, True)
    assert c.max_body_bytes == 4096


@pytest.mark.parametrize("host", ["http://0.0.0.0", "kiosk:8080", "a b", ""])
def test_a_host_that_is_not_an_address_or_name_is_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="no scheme, no port"):
        KioskConfig(host=host)


def test_allowed_hosts_must_be_bare_names() -> None:
    with pytest.raises(ValidationError, match=r"kiosk\.local:80"):
        KioskConfig(allowed_hosts=["kiosk.local:80"])


def test_an_unknown_time_zone_is_refused_with_an_example() -> None:
    with pytest.raises(ValidationError, match="Europe/Paris"):
        KioskConfig(timezone="Mars/Olympus")


def test_a_button_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="each button once"):
        KioskConfig(buttons=["pickup", "pickup"])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="admin"):
        KioskConfig.model_validate({"admin": True})


@pytest.mark.parametrize("example", ["shuttle.toml", "truck.toml", "venue.toml"])
def test_each_example_config_says_where_the_page_listens(example: str) -> None:
    """The page is on by default: an example that left it out hid a port the node takes."""
    with (ROOT / "config" / example).open("rb") as f:
        kiosk = tomllib.load(f)["services"]["kiosk"]
    assert {"enabled", "host", "port"} <= set(kiosk)
    assert (kiosk["host"], kiosk["port"]) == (KioskConfig().host, KioskConfig().port)


def test_a_screen_address_written_ipv4_mapped_is_kept_as_the_peer_it_will_be_read_as() -> None:
    """The server reads an IPv4-mapped peer as IPv4 (edged.web.gate.peer_of): a screen
    written `::ffff:10.0.0.5` was never matched, and silently lost its reserve."""
    c = KioskConfig(screen_addresses=["::ffff:10.0.0.5", "::1", "10.0.0.6"])
    assert c.screen_addresses == ["10.0.0.5", "::1", "10.0.0.6"]


@pytest.mark.parametrize("address", ["screen.local", "10.0.0.300", "", "10.0.0.5\n"])
def test_a_screen_address_that_is_not_an_ip_address_is_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="is not an IP address"):
        KioskConfig(screen_addresses=[address])
