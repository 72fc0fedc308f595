"""tools/kiosk_policy.py: the screen's Chromium policy install.sh writes, allowing the one
address the kiosk page listens on (tests/e2e/test_kiosk_policy.py: what Chromium does with it)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edged.config.kiosk import KioskConfig, browser_filter
from tests.helpers.nodes import ROOT
from tools.kiosk_policy import DEFAULT_HOST, DEFAULT_PORT, kiosk_origin, kiosk_policy

SCRIPT = ROOT / "tools" / "kiosk_policy.py"
TEMPLATE = ROOT / "systemd" / "chromium" / "edged-kiosk.json"


def test_its_defaults_are_the_kiosk_configs() -> None:
    """Standard library only, it repeats KioskConfig's defaults: an unset port is 8080 there."""
    assert (KioskConfig().host, KioskConfig().port) == (DEFAULT_HOST, DEFAULT_PORT)


def test_the_shipped_policy_allows_the_default_page_only() -> None:
    template = json.loads(TEMPLATE.read_text())
    assert template["URLAllowlist"] == [kiosk_origin({})] == ["http://127.0.0.1:8080"]
    assert template["URLBlocklist"][0] == "*"


@pytest.mark.parametrize(
    ("kiosk", "origin"),
    [
        ({"port": 8123}, "http://127.0.0.1:8123"),
        ({"host": "0.0.0.0", "port": 80}, "http://127.0.0.1:80"),  # the port kept: one port
        ({"host": "::", "port": 8080}, "http://[::1]:8080"),
        ({"host": "::1"}, "http://[::1]:8080"),
        ({"host": "192.168.4.1", "port": 8081}, "http://192.168.4.1:8081"),
        # a host name alone, not its subdomains (tests/e2e/test_kiosk_policy.py)
        ({"host": "kiosk.local"}, "http://.kiosk.local:8080"),
    ],
)
def test_the_allowed_address_is_the_one_the_screen_opens(
    kiosk: dict[str, Any], origin: str
) -> None:
    assert kiosk_policy({"URLBlocklist": ["*"]}, {"services": {"kiosk": kiosk}}) == {
        "URLBlocklist": ["*"], "URLAllowlist": [origin]
    }  # fmt: skip


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::", "::1", "192.168.4.1", "kiosk.local", "Kiosk.Lan"]
)
def test_the_allowed_address_is_the_filter_doctor_and_config_set_look_for(host: str) -> None:
    """The daemon reads the policy back (doctor, a config.set moving the page) with
    edged.config.kiosk.browser_filter: the two must write the same filter."""
    assert kiosk_origin({"host": host, "port": 8123}) == browser_filter(
        KioskConfig(host=host, port=8123)
    )


def run(config: Path) -> subprocess.CompletedProcess[str]:
    # -I: as install.sh runs it, with a Python that has none of edged's dependencies
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(TEMPLATE), str(config)],
        capture_output=True, text=True,
    )  # fmt: skip


def test_the_script_prints_the_shipped_policy_with_the_configured_port(tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    config.write_text("[services.kiosk]\nenabled = true\nport = 8123\n")
    out = run(config)
    assert out.returncode == 0, out.stderr
    expected = {**json.loads(TEMPLATE.read_text()), "URLAllowlist": ["http://127.0.0.1:8123"]}
    assert json.loads(out.stdout) == expected


def test_any_free_port_is_refused_for_the_browser_cannot_allow_it(tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    config.write_text("[services.kiosk]\nenabled = true\nport = 0\n")
    out = run(config)
    assert (out.returncode, out.stdout) == (1, "")
    assert "port = 0: the screen's browser needs a fixed port" in out.stderr
