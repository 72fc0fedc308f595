"""`[wifi]`: what an operator may write, and each mistake named with its key."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from edged.config import parse_config
from edged.config.wifi import WifiConfig
from tests.edged.wifi.conftest import NODE, Make, secret_file


def problems(make: Make, **kw: object) -> str:
    with pytest.raises(ConfigError) as err:
        make(**kw)
    return "\n".join(err.value.problems)


def test_the_hotspot_is_off_unless_the_config_turns_it_on() -> None:
    assert WifiConfig().enabled is False
    assert parse_config(NODE).wifi.enabled is False


def test_an_enabled_hotspot_needs_its_name_and_country(make: Make) -> None:
    text = problems(make, ssid=None, country=None)
    assert "wifi: " in text and "needs ssid, country" in text


def test_a_secured_hotspot_needs_its_passphrase_file(make: Make) -> None:
    assert "needs passphrase_file" in problems(make, security="wpa3")


def test_a_passphrase_file_others_can_read_is_refused_with_the_fix(
    make: Make, tmp_path: Path
) -> None:
    secret_file(tmp_path / "open.pass", "correct horse battery\n", mode=0o644)
    text = problems(make, security="wpa2", passphrase_file="open.pass")
    assert "wifi.passphrase_file" in text and "chmod 600" in text


@pytest.mark.parametrize(
    ("passphrase", "says"),
    [
        ("short", "8 to 63 printable ASCII characters (it has 5)"),
        ("x" * 64, "(it has 64)"),
        ("caf\u00e9 au lait", "not printable ASCII"),
        ("two\nlines here", "more than one line"),
        (" leading space", "starts or ends with a space"),
        ("pipe|in the middle", "'|'"),
    ],
)
def test_a_passphrase_no_backend_can_carry_is_refused_without_being_shown(
    make: Make, passphrase: str, says: str
) -> None:
    text = problems(make, passphrase=passphrase)
    assert "wifi.passphrase_file" in text and says in text
    assert passphrase.strip() not in text  # the secret never appears in an error


def test_a_passphrase_with_an_open_hotspot_is_a_mistake(make: Make, tmp_path: Path) -> None:
    secret_file(tmp_path / "p", "correct horse battery\n")
    assert 'security = "open"' in problems(make, security="open", passphrase_file="p")


@pytest.mark.parametrize(
    ("ssid", "says"),
    [
        ("", "1 to 32 bytes"),
        ("x" * 33, "this one is 33 bytes"),
        ("é" * 17, "this one is 34 bytes"),
        ("Navette\n07", "control or invisible character U+000A"),
        ("Nav\u202eette", "U+202E"),
        (" Navette", "starts or ends with a space"),
    ],
)
def test_an_ssid_phones_cannot_show_as_written_is_refused(make: Make, ssid: str, says: str) -> None:
    text = problems(make, ssid=ssid)
    assert "wifi.ssid" in text and says in text


@pytest.mark.parametrize(
    ("channel", "says"),
    [(14, "1 to 13"), (52, "radar detection (DFS)"), (149, "36, 40, 44, 48"), (0, "1 to 13")],
)
def test_a_channel_an_access_point_here_may_not_use_is_refused(
    make: Make, channel: int, says: str
) -> None:
    text = problems(make, channel=channel)
    assert "wifi.channel" in text and says in text


def test_channels_12_and_13_are_refused_where_they_are_not_allowed(make: Make) -> None:
    assert make(channel=13, country="FR").wifi.channel == 13
    assert "channel 13 is not allowed in US" in problems(make, channel=13, country="US")


@pytest.mark.parametrize("country", ["00", "XX", "France", "fr1"])
def test_a_country_that_is_not_iso_3166_is_refused(make: Make, country: str) -> None:
    text = problems(make, country=country)
    assert "wifi.country" in text and "ISO 3166" in text


def test_a_country_in_lower_case_is_taken(make: Make) -> None:
    assert make(country="fr").wifi.country == "FR"


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("8.8.8.1/24", "not a private network"),
        ("10.42.0.1/30", "prefix from /16 to /28"),
        ("10.42.0.0/24", "network's own or broadcast address"),
        ("127.0.0.1/24", "not a private network"),
        ("169.254.1.1/24", "not a private network"),
    ],
)
def test_a_hotspot_address_phones_cannot_use_is_refused(
    make: Make, address: str, says: str
) -> None:
    text = problems(make, address=address)
    assert "wifi.address" in text and says in text


def test_more_phones_than_the_network_holds_is_refused(make: Make) -> None:
    assert "fewer than max_clients = 20" in problems(make, address="10.42.0.1/28", max_clients=20)


def test_the_dhcp_range_is_every_address_beside_the_nodes(make: Make) -> None:
    lo, hi = make(address="10.42.0.1/24").wifi.dhcp_range
    assert (str(lo), str(hi)) == ("10.42.0.2", "10.42.0.254")
    lo, hi = make(address="192.168.7.254/24").wifi.dhcp_range
    assert (str(lo), str(hi)) == ("192.168.7.1", "192.168.7.253")


def test_the_total_cap_cannot_be_below_one_phones(make: Make) -> None:
    assert "total_mbit must be at least client_mbit" in problems(make, client_mbit=5, total_mbit=2)


def test_the_radio_cannot_be_its_own_uplink(make: Make) -> None:
    assert "cannot be its uplink too" in problems(make, uplinks=["wlan0"])


@pytest.mark.parametrize("name", ["eth0/1", "a" * 16, "wan 0"])
def test_an_uplink_that_is_not_an_interface_name_is_refused(make: Make, name: str) -> None:
    assert "wifi.uplinks" in problems(make, uplinks=[name])


def test_the_portal_is_the_kiosk_so_it_needs_it(tmp_path: Path) -> None:
    text = NODE.replace("enabled = true", "enabled = false")
    with pytest.raises(ConfigError) as err:
        parse_config(f'{text}\n[wifi]\nenabled = true\nssid = "x"\ncountry = "FR"\n')
    assert "services.kiosk.enabled = true" in str(err.value)


def test_the_portal_and_a_kiosk_on_the_hotspot_cannot_share_a_port(make: Make) -> None:
    with pytest.raises(ConfigError, match="give them different ports"):
        make(extra='host = "0.0.0.0"\nport = 8081\n')


def test_a_portal_name_must_be_a_host_name(make: Make) -> None:
    assert "host name" in problems(make, extra='[wifi.portal]\nname = "http://portal"\n')
    assert make(extra='[wifi.portal]\nname = "Portail.Navette.Example"\n').wifi.portal_host == (
        "portail.navette.example"
    )


def test_the_api_url_named_by_dhcp_is_the_portals(make: Make) -> None:
    assert make().wifi.api_url == "http://10.42.0.1/api/captive"


def test_unknown_keys_under_wifi_are_refused(make: Make) -> None:
    assert "wifi.password: unknown key" in problems(make, password="x")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_ssid_is_taken_or_refused_with_its_key_never_crashes(ssid: str) -> None:
    try:
        w = WifiConfig(ssid=ssid)
    except ValueError as exc:  # pydantic's ValidationError
        assert "ssid" in str(exc)
    else:
        assert w.ssid is not None and 1 <= len(w.ssid.encode()) <= 32
