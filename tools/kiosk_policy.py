"""The screen's Chromium policy for this node: systemd/chromium/edged-kiosk.json with the
kiosk page's own address as the one address allowed.

    python3 tools/kiosk_policy.py systemd/chromium/edged-kiosk.json /etc/edged/edged.toml

The policy blocks every URL (`URLBlocklist`) but the page's (`URLAllowlist`), so the address
must be the one `[services.kiosk]` listens on: another port and the screen shows "blocked by
your administrator" instead of the page. Standard library only: install.sh runs it with the
system's Python, which has no pydantic, so the defaults below repeat KioskConfig's
(tests/tools/test_kiosk_policy.py holds them equal).
"""

import ipaddress
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ANY = {"0.0.0.0": "127.0.0.1", "::": "::1"}
"""A page listening on every address is opened by the screen at the loopback one (the
server binds IPv6 without IPv4, so `::` is `[::1]`)."""


def kiosk_origin(kiosk: dict[str, Any]) -> str:
    """The filter for the address the node's own screen opens: `http://host:port`, the port
    always written (a filter without one would allow every port of that host), a host name
    with a leading dot (`http://.kiosk.lan:8080`: that host alone, not its subdomains)."""
    host = kiosk.get("host", DEFAULT_HOST)
    port = kiosk.get("port", DEFAULT_PORT)
    if not isinstance(host, str) or not host:
        raise ValueError(f"[services.kiosk] host = {host!r}: not a host")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(
            f"[services.kiosk] port = {port!r}: the screen's browser needs a fixed port "
            "(1-65535) to allow"
        )
    host = ANY.get(host, host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        host = f".{host}"  # a host name: Chromium's "no subdomains"
    return f"http://{host}:{port}"


def kiosk_policy(template: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The template with the configured page as the only URL allowed."""
    kiosk = config.get("services", {}).get("kiosk", {})
    if not isinstance(kiosk, dict):
        raise ValueError("[services.kiosk] is not a table")
    return {**template, "URLAllowlist": [kiosk_origin(kiosk)]}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} TEMPLATE.json CONFIG.toml", file=sys.stderr)
        return 2
    try:
        template = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        with open(argv[2], "rb") as f:
            config = tomllib.load(f)
        policy = kiosk_policy(template, config)
    except (OSError, ValueError) as e:  # JSON and TOML errors are ValueErrors
        print(f"kiosk_policy: {e}", file=sys.stderr)
        return 1
    print(json.dumps(policy, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
