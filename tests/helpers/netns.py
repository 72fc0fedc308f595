"""Network namespaces for the hotspot tests: a node, phones, and "the internet".

Everything happens inside namespaces created for the test (names carry the test's pid),
so nothing of the machine's own network is touched: no address, no route, no firewall
rule outside them. `ip netns exec` gives a process the namespace's /etc/netns/NAME files
(resolv.conf), as a phone's own resolver settings.
"""

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

NETNS_ETC = Path("/etc/netns")


def need_netns() -> None:
    """Skip unless namespaces and veth pairs can be made here (root, iproute2)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    if not _can_configure_a_netns():
        pytest.skip(
            "a new network namespace cannot be configured here (no CAP_NET_ADMIN, or /proc/sys "
            "read-only: a container such as systemd-nspawn without --capability=CAP_NET_ADMIN "
            "and SYSTEMD_NSPAWN_API_VFS_WRITABLE=network)"
        )


@functools.cache
def _can_configure_a_netns() -> bool:
    name = f"edged-probe-{os.getpid()}"
    if sh("ip", "netns", "add", name, check=False).returncode != 0:
        return False
    try:
        lo = sh("ip", "-n", name, "link", "set", "lo", "up", check=False)
        forward = "net.ipv4.ip_forward=1"
        sysctl = sh("ip", "netns", "exec", name, "sysctl", "-q", "-w", forward, check=False)
        return lo.returncode == 0 and sysctl.returncode == 0
    finally:
        sh("ip", "netns", "del", name, check=False)


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        sh("ip", "netns", "add", name)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            sh("ip", "netns", "del", name, check=False)  # the next test may use the name
            raise

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return sh(*self.prefix, *argv, check=check, timeout=timeout)

    def ip(self, *argv: str) -> None:
        sh("ip", "-n", self.name, *argv)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def popen(self, argv: Sequence[str], **kw: object) -> "subprocess.Popen[bytes]":
        return subprocess.Popen([*self.prefix, *argv], **kw)  # type: ignore[call-overload, no-any-return]

    def resolv(self, nameserver: str) -> None:
        """What processes started with `ip netns exec` read as /etc/resolv.conf."""
        d = NETNS_ETC / self.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {nameserver}\n")

    def delete(self) -> None:
        sh("ip", "netns", "pids", self.name, check=False)
        for pid in sh("ip", "netns", "pids", self.name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(NETNS_ETC / self.name, ignore_errors=True)


def veth(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
    """A cable between two namespaces."""
    tmp_a, tmp_b = f"v{os.getpid() % 100000}a{a_if}"[:15], f"v{os.getpid() % 100000}b{b_if}"[:15]
    sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    sh("ip", "link", "set", tmp_a, "netns", a.name, "name", a_if)
    sh("ip", "link", "set", tmp_b, "netns", b.name, "name", b_if)
    a.ip("link", "set", a_if, "up")
    b.ip("link", "set", b_if, "up")


@contextlib.contextmanager
def namespaces(*roles: str) -> Iterator[dict[str, Netns]]:
    """One namespace per role, all deleted (with their processes) afterwards."""
    made: dict[str, Netns] = {}
    try:
        for role in roles:
            made[role] = Netns(f"e18-{os.getpid()}-{role}")
        yield made
    finally:
        for ns in made.values():
            ns.delete()


CLONE_NEWNET = 0x40000000


def enter(name: str) -> None:
    """Move the calling thread into namespace `name` (sockets and child processes it
    makes from now on live there). Only for threads made for it: see NsThread."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NsThread:
    """An asyncio loop in a thread of its own inside a namespace: what it runs (sockets,
    servers, child processes) is in that namespace, while the test drives it from outside."""

    def __init__(self, name: str) -> None:
        import asyncio
        import threading

        self.name = name
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            try:
                enter(name)
            except BaseException as exc:  # reported to the constructor
                failed.append(exc)
                ready.set()
                return
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name=f"netns-{name}", daemon=True)
        self.thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]

    def run(self, coro: "object", timeout: float = 30.0) -> "object":
        """Run a coroutine there; its result here."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: "object", *args: object, timeout: float = 30.0) -> "object":
        """Run a plain function there (it blocks that loop while it runs)."""

        async def wrapper() -> object:
            return fn(*args)  # type: ignore[operator]

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        import asyncio

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.run(cancel_all(), 10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


DEBIAN_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
"""Debian's /etc/hosts (Raspberry Pi OS's too): `localhost` names ::1 and 127.0.0.1."""


@contextlib.contextmanager
def ipv6_off(hosts: str = DEBIAN_HOSTS) -> Iterator[Netns]:
    """A namespace with IPv6 disabled (`net.ipv6.conf.all.disable_ipv6`, as on a Pi set up
    so: its loopback has no ::1) whose processes read `hosts` as /etc/hosts (`python_in`)."""
    need_netns()
    ns = Netns(f"e18-{os.getpid()}-v4only")
    try:
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        ns.sysctl("net.ipv6.conf.lo.disable_ipv6", "1")
        etc = NETNS_ETC / ns.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        yield ns
    finally:
        ns.delete()


def python_in(ns: Netns, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with this interpreter in `ns` (the project importable), and check its exit."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [*ns.prefix, sys.executable, "-P", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
