"""`edged wifi apply`: writes what the config says, says what changed, changes nothing the
second time, never shows a secret, and takes the radio down before removing its files."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from edged.wifi.apply import apply_plan
from edged.wifi.layout import Layout
from edged.wifi.plan import Step, build_plan
from tests.edged.wifi.conftest import Make

PASS = "correct horse battery staple"


class Recorder:
    """Stands for systemctl, nmcli and friends where there is no systemd as PID 1 (here):
    records each command; a name in `failing` exits 1."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.ran: list[list[str]] = []
        self.failing = failing

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.ran.append(argv)
        code = 1 if any(f in " ".join(argv) for f in self.failing) else 0
        return subprocess.CompletedProcess(argv, code, "", "it broke" if code else "")


def files_under(root: Path) -> dict[str, int]:
    return {
        "/" + str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_first_apply_creates_every_file_of_the_backend(make: Make, tmp_path: Path) -> None:
    plan = build_plan(make(passphrase=PASS), "hostapd")
    out = apply_plan(plan, root=tmp_path / "img")
    assert out.ok and out.changed == 10
    made = files_under(tmp_path / "img")
    assert made["/etc/hostapd/edged-hotspot.conf"] == 0o600  # it holds the passphrase
    assert made["/etc/edged-hotspot/hotspot.nft"] == 0o644
    assert "/etc/NetworkManager/system-connections/edged-hotspot.nmconnection" not in made
    assert sum(line.startswith("create ") for line in out.lines) == 10


def test_a_second_apply_changes_nothing_and_runs_nothing(make: Make, tmp_path: Path) -> None:
    plan = build_plan(make(passphrase=PASS), "networkmanager")
    apply_plan(plan, root=tmp_path / "img")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "img").rglob("*") if p.is_file()}
    out = apply_plan(plan, root=tmp_path / "img")
    assert out.changed == 0
    assert out.lines == [
        "unchanged: 8 file(s)",
        "nothing to do: the system already matches the config",
    ]
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "img").rglob("*") if p.is_file()}
    assert after == before


def test_a_change_rewrites_only_its_files_and_runs_only_their_steps(
    make: Make, tmp_path: Path
) -> None:
    root = tmp_path / "img"
    apply_plan(build_plan(make(passphrase=PASS), "networkmanager"), root=root)
    out = apply_plan(build_plan(make(passphrase=PASS, channel=11), "networkmanager"), root=root)
    changed = [line for line in out.lines if line.startswith("change ")]
    assert changed == ["change /etc/NetworkManager/system-connections/edged-hotspot.nmconnection"]
    assert "    -channel=6" in out.lines and "    +channel=11" in out.lines
    steps = [line for line in out.lines if line.startswith("not run")]
    assert [s.rsplit("): ", 1)[1] for s in steps] == [
        "nmcli connection reload",
        "nmcli connection up edged-hotspot",
    ]


def test_a_diff_never_shows_the_passphrase(make: Make, tmp_path: Path) -> None:
    root = tmp_path / "img"
    apply_plan(build_plan(make(passphrase=PASS), "hostapd"), root=root)
    out = apply_plan(build_plan(make(passphrase="another secret phrase"), "hostapd"), root=root)
    text = "\n".join(out.lines)
    assert PASS not in text and "another secret phrase" not in text
    assert "(only the passphrase changed)" in text


def test_a_dry_run_writes_nothing_and_says_what_it_would_do(make: Make, tmp_path: Path) -> None:
    layout = Layout().under(tmp_path / "etc")
    plan = build_plan(make(passphrase=PASS), "hostapd", layout=layout)
    out = apply_plan(plan, dry_run=True, run=Recorder())
    assert not (tmp_path / "etc").exists()
    # "not checked: …" where the tool cannot run here (nft -c without CAP_NET_ADMIN)
    assert all(
        line.startswith(("would ", "unchanged", "not checked: ")) for line in out.lines
    ), out.lines
    assert f"would create {layout.nft}" in out.lines


def test_a_mode_changed_by_hand_is_put_back(make: Make, tmp_path: Path) -> None:
    root = tmp_path / "img"
    apply_plan(build_plan(make(passphrase=PASS), "hostapd"), root=root)
    conf = root / "etc/hostapd/edged-hotspot.conf"
    os.chmod(conf, 0o644)
    out = apply_plan(build_plan(make(passphrase=PASS), "hostapd"), root=root)
    assert "set mode 600 on /etc/hostapd/edged-hotspot.conf (was 644)" in out.lines
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_steps_run_in_order_the_firewall_before_the_radio(make: Make, tmp_path: Path) -> None:
    layout = Layout().under(tmp_path / "etc")
    rec = Recorder()
    out = apply_plan(build_plan(make(passphrase=PASS), "hostapd", layout=layout), run=rec)
    assert out.ok
    ran = [" ".join(a) for a in rec.ran]
    assert ran.index(f"nft -f {layout.nft}") < ran.index(
        "systemctl restart hostapd@edged-hotspot.service"
    )
    assert ran[0].startswith("sysctl") and ran[-1] == "systemctl try-restart edged.service"
    assert ran.count("systemctl daemon-reload") == 1


def test_turning_the_hotspot_off_takes_the_radio_down_before_the_firewall(
    make: Make, tmp_path: Path
) -> None:
    layout = Layout().under(tmp_path / "etc")
    apply_plan(build_plan(make(passphrase=PASS), "networkmanager", layout=layout), run=Recorder())
    rec = Recorder()
    out = apply_plan(build_plan(make(enabled=False), None, layout=layout), run=rec)
    assert out.ok
    assert not any(p.is_file() for p in (tmp_path / "etc").rglob("*"))
    ran = [" ".join(a) for a in rec.ran]
    assert ran[0] == "nmcli connection down edged-hotspot"
    assert ran.index("nmcli connection down edged-hotspot") < ran.index(
        "nft delete table inet edged_hotspot"
    )


def test_switching_backend_removes_the_other_ones_files(make: Make, tmp_path: Path) -> None:
    layout = Layout().under(tmp_path / "etc")
    config = make(passphrase=PASS)
    apply_plan(build_plan(config, "hostapd", layout=layout), run=Recorder())
    rec = Recorder()
    out = apply_plan(build_plan(config, "networkmanager", layout=layout), run=rec)
    assert f"remove {layout.hostapd}" in out.lines and f"create {layout.nm_keyfile}" in out.lines
    assert not layout.hostapd.exists() and layout.nm_keyfile.exists()
    ran = [" ".join(a) for a in rec.ran]
    assert ran[0] == "systemctl disable --now hostapd@edged-hotspot.service"


def test_a_file_its_tool_refuses_stops_everything_before_a_write(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout().under(tmp_path / "etc")
    plan = build_plan(make(passphrase=PASS), "hostapd", layout=layout)
    broken = [
        m.__class__(**{**m.__dict__, "content": m.content.replace("driver=nl80211", "driver=nope")})
        if m.tool == "hostapd" and m.content
        else m
        for m in plan.files
    ]
    rec = Recorder()
    out = apply_plan(plan.__class__(plan.backend, broken, plan.values), run=rec)
    assert not out.ok and rec.ran == []
    assert not (tmp_path / "etc").exists()
    assert any(line.startswith("hostapd refuses") for line in out.lines)
    assert out.lines[-1].startswith("nothing written")


def test_a_failed_step_is_reported_and_the_apply_fails(make: Make, tmp_path: Path) -> None:
    layout = Layout().under(tmp_path / "etc")
    out = apply_plan(
        build_plan(make(), "networkmanager", layout=layout),
        run=Recorder(failing=("connection up",)),
    )
    assert not out.ok
    assert "FAILED: nmcli connection up edged-hotspot: it broke" in out.lines


def test_a_step_that_may_fail_does_not_fail_the_apply(make: Make, tmp_path: Path) -> None:
    layout = Layout().under(tmp_path / "etc")
    out = apply_plan(
        build_plan(make(), "hostapd", layout=layout), run=Recorder(failing=("iw reg",))
    )
    assert out.ok
    assert any("iw reg set FR (failed, not needed" in line for line in out.lines)
    assert Step.REGDOM.may_fail


def test_a_kernel_without_conntrack_timeouts_still_gets_the_firewall_and_is_told(
    make: Make, tmp_path: Path
) -> None:
    # Raspberry Pi OS may build its kernel without CONFIG_NF_CONNTRACK_TIMEOUT: the
    # timeouts are a file (and a table) of their own, whose refusal leaves the firewall
    # loaded and the apply successful, and says what it costs.
    layout = Layout().under(tmp_path / "etc")
    rec = Recorder(failing=(f"nft -f {layout.timeouts}",))
    out = apply_plan(build_plan(make(), "hostapd", layout=layout), run=rec)
    assert out.ok
    ran = [" ".join(a) for a in rec.ran]
    assert ran.index(f"nft -f {layout.nft}") < ran.index(f"nft -f {layout.timeouts}")
    (said,) = [line for line in out.lines if f"nft -f {layout.timeouts}" in line]
    assert "failed, this kernel has no conntrack timeouts" in said and "it broke" in said
    assert layout.timeouts.exists()


def test_a_timeouts_file_the_kernel_refuses_is_reported_and_written_all_the_same(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `nft -c` of the timeouts on a kernel without them refuses the file: the apply must
    # not stop there (the firewall is the point), but say so.
    from edged.wifi import apply as apply_module
    from edged.wifi.validate import Verdict

    def refusing(text: str, **_: object) -> Verdict:
        if "ct timeout" in text:
            return Verdict("nft", False, "Error: Could not process rule: No such file or directory")
        return Verdict("nft", True)

    monkeypatch.setattr(apply_module, "check_nft", refusing)
    layout = Layout().under(tmp_path / "etc")
    rec = Recorder()
    out = apply_plan(build_plan(make(), "hostapd", layout=layout), run=rec)
    assert out.ok
    assert f"nft refuses {layout.timeouts} (written all the same):" in out.lines
    assert layout.nft.exists() and layout.timeouts.exists()
