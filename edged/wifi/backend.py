"""Which tool runs the radio here: NetworkManager where it runs (Raspberry Pi OS bookworm),
else hostapd with dnsmasq."""

import shutil
import subprocess

from edged.config.wifi import WifiConfig
from edged.wifi.plan import BackendName


def networkmanager_running() -> bool:
    nmcli = shutil.which("nmcli")
    if nmcli is None:
        return False
    try:
        done = subprocess.run(
            [nmcli, "-t", "-f", "RUNNING", "general"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "running"


def choose_backend(wifi: WifiConfig) -> BackendName | None:
    """None when the hotspot is disabled (apply then removes what it had written)."""
    if not wifi.enabled:
        return None
    if wifi.backend != "auto":
        return wifi.backend
    return "networkmanager" if networkmanager_running() else "hostapd"
