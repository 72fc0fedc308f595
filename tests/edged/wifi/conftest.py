"""Configs of the hotspot, and passphrase files as an operator writes them."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edged.config import parse_config
from edged.config.models import EdgedConfig

NODE = """
[node]
fleet = "creuse"
id = "shuttle-07"
profile = "shuttle"

[services.kiosk]
enabled = true
"""


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


Make = Callable[..., EdgedConfig]


@pytest.fixture
def make(tmp_path: Path) -> Make:
    """A whole config with `[wifi]` set from keywords (an enabled, open hotspot by default);
    `passphrase=` writes the secret file; `extra` goes in [services.kiosk] (or opens its own
    table)."""

    def build(*, passphrase: str | None = None, extra: str = "", **wifi: Any) -> EdgedConfig:
        keys: dict[str, Any] = {"enabled": True, "ssid": "Navette 07", "country": "FR"}
        keys.update(wifi)
        if passphrase is not None:
            secret_file(tmp_path / "wifi.pass", passphrase + "\n")
            keys.setdefault("security", "wpa2")
            keys["passphrase_file"] = "wifi.pass"
        lines = "\n".join(f"{k} = {toml_value(v)}" for k, v in keys.items() if v is not None)
        return parse_config(f"{NODE}{extra}\n[wifi]\n{lines}\n", base_dir=tmp_path)

    return build


def nmcli() -> str:
    """nmcli for `--offline` checks: the system's, or the one `./dev test` took out of the
    network-manager package (installing that package would start NetworkManager)."""
    import shutil

    from tests.helpers.nodes import ROOT

    found = shutil.which("nmcli") or str(ROOT / ".cache/network-manager/usr/bin/nmcli")
    if not Path(found).exists():
        pytest.fail("nmcli is not here: `./dev test` fetches it (see dev, nmcli_offline)")
    return found


@pytest.fixture(scope="session")
def scratch_netns() -> Any:
    """A namespace where `nft -c` checks rulesets, away from this machine's own firewall."""
    from tests.helpers.netns import Netns, need_netns

    need_netns()
    ns = Netns(f"e18-{os.getpid()}-check")
    yield ns.name
    ns.delete()
