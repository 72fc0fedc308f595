"""edged/sdnotify.py against a real AF_UNIX datagram socket standing in for systemd."""

import asyncio
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged import sdnotify
from edged.sdnotify import SystemdNotifier, beat_recent, task_alive, watchdog_loop


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET: datagrams with their arrival time."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.sock.setblocking(False)

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def messages(self) -> list[dict[str, str]]:
        """Every datagram received so far, parsed."""
        out: list[dict[str, str]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    async def collect(self, seconds: float) -> list[tuple[float, dict[str, str]]]:
        """(monotonic arrival, fields) for `seconds`, read while the loop runs."""
        loop = asyncio.get_running_loop()
        out: list[tuple[float, dict[str, str]]] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    data = await loop.sock_recv(self.sock, 4096)
            except TimeoutError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            out.append((time.monotonic(), fields))
        return out


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    sdnotify._warned.clear()
    yield
    sdnotify._warned.clear()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield FakeSystemd(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    name = f"edged-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield FakeSystemd(sock, "@" + name)
    sock.close()


def pings(received: list[tuple[float, dict[str, str]]]) -> list[float]:
    return [t for t, fields in received if fields.get("WATCHDOG") == "1"]


def statuses(received: list[tuple[float, dict[str, str]]]) -> list[str]:
    return [fields["STATUS"] for _, fields in received if "STATUS" in fields]


# -- the notifier --------------------------------------------------------------------


def test_ready_arrives_on_a_path_socket(systemd: FakeSystemd) -> None:
    assert SystemdNotifier(systemd.env()).ready()
    assert systemd.messages() == [{"READY": "1"}]


def test_ready_arrives_on_an_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    assert SystemdNotifier(abstract_systemd.env()).ready()
    assert abstract_systemd.messages() == [{"READY": "1"}]


def test_ready_can_carry_the_first_status_in_the_same_datagram(systemd: FakeSystemd) -> None:
    SystemdNotifier(systemd.env()).ready(status="online, outbox 0")
    assert systemd.messages() == [{"READY": "1", "STATUS": "online, outbox 0"}]


def test_status_updates_arrive_in_order(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env())
    n.status("starting")
    n.status("online, outbox 0, 4 drivers running")
    assert systemd.messages() == [
        {"STATUS": "starting"},
        {"STATUS": "online, outbox 0, 4 drivers running"},
    ]


def test_a_newline_in_a_status_cannot_forge_another_field(systemd: FakeSystemd) -> None:
    SystemdNotifier(systemd.env()).status("broker down\nREADY=1")
    assert systemd.messages() == [{"STATUS": "broker down READY=1"}]


def test_stopping_and_reloading_send_their_fields(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env())
    n.reloading("restarting from the new config")
    n.stopping()
    assert systemd.messages() == [
        {"RELOADING": "1", "STATUS": "restarting from the new config"},
        {"STOPPING": "1"},
    ]


def test_module_level_notify_reads_the_environment(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.env_value)
    monkeypatch.setattr(sdnotify, "_default", None)
    assert sdnotify.notify(STATUS="hello")
    assert systemd.messages() == [{"STATUS": "hello"}]


def test_everything_is_a_no_op_without_notify_socket() -> None:
    n = SystemdNotifier({})
    assert not n.enabled
    assert not n.ready()
    assert not n.watchdog()
    assert n.watchdog_interval() is None


def test_the_process_environment_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not SystemdNotifier().enabled


def test_watchdog_interval_is_half_of_watchdog_usec(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="30000000"))
    assert n.watchdog_interval() == 15.0


def test_watchdog_for_our_pid_is_honoured(systemd: FakeSystemd) -> None:
    env = systemd.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid()))
    assert SystemdNotifier(env).watchdog_interval() == 15.0


def test_watchdog_meant_for_another_process_is_ignored(systemd: FakeSystemd) -> None:
    env = systemd.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1))
    assert SystemdNotifier(env).watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "0", "-5", "thirty"])
def test_a_missing_or_bad_watchdog_usec_means_no_watchdog(systemd: FakeSystemd, value: str) -> None:
    assert SystemdNotifier(systemd.env(WATCHDOG_USEC=value)).watchdog_interval() is None


@pytest.mark.parametrize(
    "value", ["notify", "run/systemd/notify", "vsock:2:1234", "/" + "x" * 200, "@" + "y" * 200]
)
def test_an_unusable_notify_socket_turns_notifications_off_and_says_so_once(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.sdnotify"):
        first, second = (
            SystemdNotifier({"NOTIFY_SOCKET": value}),
            SystemdNotifier({"NOTIFY_SOCKET": value}),
        )
        assert not first.enabled
        assert not first.ready()
        assert not second.watchdog()
    assert len(caplog.records) == 1
    assert "NOTIFY_SOCKET" in caplog.messages[0]


def test_a_socket_that_is_gone_fails_quietly_after_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="edged.sdnotify"):
        results = [n.watchdog() for _ in range(5)]
    assert results == [False] * 5
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.messages[0]


def test_sending_recovers_when_the_socket_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    n = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert not n.ready()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        assert n.ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


# -- the health-gated watchdog ---------------------------------------------------------

FAST: dict[str, Any] = {"tick_s": 0.02, "max_lag_s": 0.5, "status_every_s": 0.1}


Received = list[tuple[float, dict[str, str]]]


async def run_for(seconds: float, systemd: FakeSystemd, **kwargs: Any) -> Received:
    task = asyncio.create_task(watchdog_loop(**kwargs))
    try:
        return await systemd.collect(seconds)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watchdog_pings_at_the_interval_while_healthy(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))  # interval 0.1 s
    got = await run_for(0.65, systemd, notifier=n, checks=[lambda: None], **FAST)
    times = pings(got)
    assert len(times) >= 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.09 <= g <= 0.5 for g in gaps), gaps  # never more often than the interval


async def test_no_ping_while_a_check_reports_a_problem(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    got = await run_for(0.5, systemd, notifier=n, checks=[lambda: "outbox writer ended"], **FAST)
    assert pings(got) == []
    assert "unhealthy: outbox writer ended" in statuses(got)


async def test_pings_stop_when_unhealthy_and_resume_when_healthy_again(
    systemd: FakeSystemd,
) -> None:
    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    problem: list[str | None] = [None]
    task = asyncio.create_task(watchdog_loop(n, [lambda: problem[0]], **FAST))
    try:
        before = await systemd.collect(0.35)
        problem[0] = "uplink task ended"
        during = await systemd.collect(0.4)
        problem[0] = None
        after = await systemd.collect(0.35)
    finally:
        task.cancel()
    assert pings(before)
    # the first tick of `during` may still catch the check passing; then no more pings
    assert len(pings(during)) <= 1
    assert pings(after)


async def test_a_check_that_raises_counts_as_a_failure_and_the_loop_survives(
    systemd: FakeSystemd,
) -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    got = await run_for(0.4, systemd, notifier=n, checks=[broken], **FAST)
    assert pings(got) == []
    assert any("broken raised RuntimeError('boom')" in s for s in statuses(got))


async def test_a_blocked_event_loop_skips_the_ping_and_says_why(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    task = asyncio.create_task(watchdog_loop(n, [], tick_s=0.02, max_lag_s=0.15, status_every_s=10))
    try:
        await systemd.collect(0.15)
        time.sleep(0.4)  # a blocking call on the loop, as a stuck driver would make
        got = await systemd.collect(0.3)
        deadline = time.monotonic() + 3  # a busy machine may keep the loop late a while
        while not pings(got) and time.monotonic() < deadline:
            got += await systemd.collect(0.1)
    finally:
        task.cancel()
    # the first tick after the block sees the lateness: a STATUS and no ping; later ones ping
    first = got[0][1]
    assert "WATCHDOG" not in first
    assert "event loop" in first["STATUS"]
    assert "late" in first["STATUS"]
    assert pings(got), "pings resume once the loop runs on time"


async def test_status_text_comes_from_a_sync_callable(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env())
    got = await run_for(0.2, systemd, notifier=n, status=lambda: "online, outbox 0", **FAST)
    assert statuses(got) == ["online, outbox 0"]


async def test_status_text_comes_from_an_async_callable_and_is_kept_current(
    systemd: FakeSystemd,
) -> None:
    depth = [0]

    async def status() -> str:
        depth[0] += 1
        return f"online, outbox {depth[0]}, 4 drivers running"

    n = SystemdNotifier(systemd.env())
    got = await run_for(0.45, systemd, notifier=n, status=status, **FAST)
    texts = statuses(got)
    assert texts[0] == "online, outbox 1, 4 drivers running"
    assert len(texts) >= 3
    assert len(set(texts)) == len(texts), "only changes are sent"


async def test_status_is_only_sent_when_it_changes(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env())
    got = await run_for(0.4, systemd, notifier=n, status=lambda: "same", **FAST)
    assert statuses(got) == ["same"]


async def test_a_status_that_hangs_withholds_the_ping(systemd: FakeSystemd) -> None:
    async def stuck() -> str:
        await asyncio.sleep(3600)  # e.g. waiting on an executor that is stuck
        return "never"

    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    got = await run_for(0.5, systemd, notifier=n, status=stuck, status_timeout_s=0.1, **FAST)
    assert pings(got) == []
    assert any("status did not answer within 0.1 s" in s for s in statuses(got))


async def test_a_status_that_raises_is_shown_as_unavailable_and_does_not_block_pings(
    systemd: FakeSystemd,
) -> None:
    def failing() -> str:
        raise OSError("disk gone")

    n = SystemdNotifier(systemd.env(WATCHDOG_USEC="200000"))
    got = await run_for(0.35, systemd, notifier=n, status=failing, **FAST)
    assert pings(got)
    assert statuses(got) == ["running (status unavailable)"]


async def test_without_watchdog_usec_only_status_is_sent(systemd: FakeSystemd) -> None:
    n = SystemdNotifier(systemd.env())
    got = await run_for(0.3, systemd, notifier=n, status=lambda: "online", **FAST)
    assert pings(got) == []
    assert statuses(got) == ["online"]


async def test_outside_systemd_the_loop_returns_at_once() -> None:
    async with asyncio.timeout(1):
        await watchdog_loop(SystemdNotifier({}), [lambda: None], status=lambda: "x")


async def test_a_notifier_whose_socket_is_gone_does_not_stop_the_loop(tmp_path: Path) -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone"), "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(watchdog_loop(n, [lambda: None], **FAST))
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()


# -- checks for the node -------------------------------------------------------------


async def test_task_alive_passes_while_the_task_runs_and_names_it_when_it_ends() -> None:
    ended = asyncio.Event()

    async def writer() -> None:
        await ended.wait()
        raise OSError("disk I/O error")

    task = asyncio.create_task(writer(), name="outbox.writer")
    check = task_alive(task)
    assert check() is None
    ended.set()
    with pytest.raises(OSError):
        await task
    assert check() == "outbox.writer ended: OSError('disk I/O error')"


async def test_task_alive_reports_a_cancelled_task() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task_alive(task, "uplink")() == "uplink was cancelled"


def test_beat_recent_fails_when_the_heartbeat_is_old() -> None:
    beat = [time.monotonic()]
    check = beat_recent(lambda: beat[0], 1.0, "loop-lag probe")
    assert check() is None
    beat[0] -= 5
    reason = check()
    assert reason is not None
    assert reason.startswith("loop-lag probe: no beat for 5.")
