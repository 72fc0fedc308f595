"""Each generated file checked by its own tool before it is written.

- nftables: `nft -c -f` (the kernel checks the ruleset in a transaction it never commits;
  needs CAP_NET_ADMIN, as `edged wifi apply` has as root);
- dnsmasq: `dnsmasq --test` on the file (with NetworkManager's options for its part);
- hostapd: hostapd itself reads a copy whose interface does not exist: every line is
  parsed and checked, then it stops at the missing interface, never touching the radio;
- NetworkManager: `nmcli --offline connection modify` reads the keyfile, checks the
  connection as NetworkManager would, and prints it back normalised (nmcli 1.42+).

A tool that is not installed is skipped (and said so); a tool that refuses the file stops
the apply before anything is written.
"""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edged.wifi.layout import CONNECTION
from edged.wifi.tool import find

TIMEOUT_S = 10.0
CHECK_IFACE = "edgedchk0"
"""An interface name that does not exist: hostapd parses everything, then stops there."""
NM_SHARED_ARGS = (
    "--conf-file=/dev/null",
    "--no-hosts",
    "--bind-interfaces",
    "--except-interface=lo",
    "--clear-on-reload",
    "--strict-order",
    "--listen-address=10.42.0.1",
    "--dhcp-range=10.42.0.10,10.42.0.254,60m",
    "--dhcp-lease-max=50",
    "--dhcp-leasefile=/var/lib/NetworkManager/dnsmasq-wlan0.leases",
)
"""What NetworkManager 1.42 gives its shared-mode dnsmasq before its conf-dir: our file
must make sense on top of them."""


@dataclass(frozen=True)
class Verdict:
    tool: str
    ok: bool | None
    """None: the tool is not here, nothing was checked."""
    message: str = ""
    normalised: str | None = None


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _tool(name: str, path: str | None = None) -> str | None:
    return path or find(name)


def check_nft(text: str, *, nft: str | None = None, netns: str | None = None) -> Verdict:
    tool = _tool("nft", nft)
    if tool is None:
        return Verdict("nft", None, "nft is not installed (apt-get install nftables)")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(text)
        f.flush()
        done = _run([*prefix, tool, "-c", "-f", f.name])
    if done.returncode == 0:
        return Verdict("nft", True)
    message = (done.stderr or done.stdout).strip()
    if "Operation not permitted" in message:
        return Verdict("nft", None, "nft -c needs root (CAP_NET_ADMIN): not checked")
    return Verdict("nft", False, message)


def check_dnsmasq(text: str, *, networkmanager: bool = False) -> Verdict:
    tool = _tool("dnsmasq")
    if tool is None:
        return Verdict("dnsmasq", None, "dnsmasq is not installed (apt-get install dnsmasq-base)")
    with tempfile.TemporaryDirectory(prefix="edged-dnsmasq-") as tmp:
        conf = Path(tmp) / "hotspot.conf"
        conf.write_text(text)
        if networkmanager:
            argv = [tool, "--test", *NM_SHARED_ARGS, f"--conf-dir={tmp}"]
        else:
            argv = [tool, "--test", f"--conf-file={conf}"]
        done = _run(argv)
    out = (done.stderr + done.stdout).strip()
    if done.returncode == 0 and "syntax check OK" in out:
        return Verdict("dnsmasq", True)
    return Verdict("dnsmasq", False, out)


def check_hostapd(text: str) -> Verdict:
    tool = _tool("hostapd")
    if tool is None:
        return Verdict("hostapd", None, "hostapd is not installed (apt-get install hostapd)")
    lines = []
    for line in text.splitlines():
        if line.startswith("interface="):
            line = f"interface={CHECK_IFACE}"
        elif line.startswith("ctrl_interface"):
            continue  # no control socket for a check
        lines.append(line)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        done = _run([tool, f.name])
    out = (done.stdout + done.stderr).strip()
    errors = [ln for ln in out.splitlines() if re.match(r"Line \d+:", ln)]
    if "errors found in configuration file" in out or errors:
        return Verdict("hostapd", False, "\n".join(errors) or out)
    reached = CHECK_IFACE in out or "Failed to initialize driver" in out
    if not reached:
        return Verdict("hostapd", False, f"hostapd did not get past its config: {out[-500:]}")
    return Verdict("hostapd", True)


def check_keyfile(text: str, *, nmcli: str | None = None) -> Verdict:
    tool = _tool("nmcli", nmcli)
    if tool is None:
        return Verdict("nmcli", None, "nmcli is not installed: the keyfile was not checked")
    probe = _run([tool, "--offline", "--version"])
    if probe.returncode != 0:
        return Verdict("nmcli", None, f"this nmcli has no --offline mode: {probe.stderr.strip()}")
    done = _run([tool, "--offline", "connection", "modify", "connection.id", CONNECTION], text)
    if done.returncode != 0:
        return Verdict("nmcli", False, (done.stderr or done.stdout).strip())
    return Verdict("nmcli", True, normalised=done.stdout)


ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def keyfile_unescape(value: str) -> str:
    """GKeyFile's string escapes undone (\\s, \\n, \\t, \\r, \\\\)."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in ESCAPES:
            out.append(ESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_keyfile(text: str) -> dict[str, dict[str, str]]:
    """A keyfile as {group: {key: value}}, values unescaped (for comparing what
    NetworkManager read with what was meant)."""
    out: dict[str, dict[str, str]] = {}
    group: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            group = out.setdefault(line[1:-1], {})
        elif "=" in line and group is not None and not line.startswith("#"):
            key, _, value = line.partition("=")
            group[key] = keyfile_unescape(value)
    return out
