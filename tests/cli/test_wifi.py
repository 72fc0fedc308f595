"""`edged wifi apply` as an operator types it: exit codes, what it prints, what it writes."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.edged.wifi.conftest import NODE, secret_file
from tests.helpers.nodes import ROOT


def edged(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "edged", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def config(d: Path, wifi: str) -> Path:
    secret_file(d / "wifi.pass", "correct horse battery\n")
    path = d / "edged.toml"
    path.write_text(f"{NODE}\n[wifi]\n{wifi}\n")
    return path


HOTSPOT = 'enabled = true\nssid = "Navette 07"\ncountry = "FR"\nsecurity = "wpa2"\npassphrase_file = "wifi.pass"\n'


def test_apply_into_an_image_writes_the_files_then_has_nothing_to_do(tmp_path: Path) -> None:
    cfg = config(tmp_path, HOTSPOT + 'backend = "networkmanager"\n')
    first = edged("wifi", "apply", "-c", str(cfg), "--root", str(tmp_path / "img"))
    assert first.returncode == 0, first.stderr
    assert "create /etc/NetworkManager/system-connections/edged-hotspot.nmconnection" in first.stdout
    assert "not run (--root" in first.stdout and "correct horse" not in first.stdout
    second = edged("wifi", "apply", "-c", str(cfg), "--root", str(tmp_path / "img"))
    assert second.returncode == 0 and "nothing to do" in second.stdout


def test_a_dry_run_on_this_machine_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, HOTSPOT + 'backend = "hostapd"\n')
    done = edged("wifi", "apply", "-c", str(cfg), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would create /etc/edged-hotspot/hotspot.nft" in done.stdout
    assert "would run (dry run): nft -f /etc/edged-hotspot/hotspot.nft" in done.stdout
    assert not Path("/etc/edged-hotspot/hotspot.nft").exists()


def test_a_bad_config_exits_2_with_its_problems(tmp_path: Path) -> None:
    cfg = config(tmp_path, 'enabled = true\nssid = "x"\ncountry = "XX"\n')
    done = edged("wifi", "apply", "-c", str(cfg), "--dry-run")
    assert done.returncode == 2 and "wifi.country" in done.stderr


def test_what_networkmanager_cannot_do_exits_2_and_says_what_to_choose(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, HOTSPOT.replace('"wpa2"', '"wpa2-wpa3"') + 'backend = "networkmanager"\n'
    )
    done = edged("wifi", "apply", "-c", str(cfg), "--root", str(tmp_path / "img"))
    assert done.returncode == 2 and 'backend = "hostapd"' in done.stderr


def test_a_user_is_told_to_run_it_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the command as nobody: needs root to switch")
    d = Path(tempfile.mkdtemp(prefix="edged-wifi-cli-"))
    try:
        os.chmod(d, 0o755)
        cfg = d / "edged.toml"
        cfg.write_text(f"{NODE}\n[wifi]\nenabled = true\nssid = \"x\"\ncountry = \"FR\"\n")
        os.chmod(cfg, 0o644)
        done = edged("wifi", "apply", "-c", str(cfg), user=65534)
        assert done.returncode == 1 and "run it as root" in done.stderr
        assert "--dry-run" in done.stderr
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
