"""The kiosk HTTP server on a real port: headers, validation, limits, live state."""

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from edged import logs
from edged.config.kiosk import KioskConfig
from edged.kiosk import server as kiosk_server
from edged.kiosk.server import STATIC, KioskServer, load_static
from edged.logs import BURST
from edged.node import Node
from edged.services.kiosk import KioskService
from tests.helpers.journal import Journal
from tests.helpers.kiosk import Serve, stored

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def server(serve: Serve) -> KioskServer:
    return await serve()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, server: KioskServer, body: Any, **kw: Any
) -> tuple[int, dict[str, Any], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**JSON, **kw.pop("headers", {})}
    async with http.post(f"{server.url}api/requests", data=data, headers=headers, **kw) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


# -- headers and files ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "static/kiosk.js", "api/state", "nope", "static/nope"])
async def test_every_response_carries_the_security_headers(
    http: aiohttp.ClientSession, server: KioskServer, path: str
) -> None:
    async with http.get(f"{server.url}{path}") as r:
        csp = r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in csp and "*" not in csp


async def test_the_page_and_its_files_are_served_with_their_types(
    http: aiohttp.ClientSession, server: KioskServer
) -> None:
    async with http.get(server.url) as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert '<html lang="fr">' in await r.text()
    for name, ctype in STATIC.items():
        if name == "index.html":
            continue  # only at /
        async with http.get(f"{server.url}static/{name}") as r:
            assert r.status == 200 and r.content_type == ctype


@pytest.mark.parametrize(
    "path",
    [
        "static/..%2Fserver.py",
        "static/%2e%2e/server.py",
        "static/../server.py",
        "static/index.html",
        "static/",
        "admin",
        "api/commands",
        "api/cmd/ping",
    ],
)
async def test_there_is_nothing_else_to_get(
    http: aiohttp.ClientSession, server: KioskServer, path: str
) -> None:
    async with http.get(f"{server.url}{path}") as r:
        assert r.status == 404
        assert (await r.json())["error"] == "not_found"


async def test_requests_only_take_post(http: aiohttp.ClientSession, server: KioskServer) -> None:
    async with http.get(f"{server.url}api/requests") as r:
        assert r.status == 405 and (await r.json())["error"] == "method_not_allowed"


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = load_static()["index.html"].decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from the internet


def test_the_script_never_writes_html_or_evaluates_strings() -> None:
    js = load_static()["kiosk.js"].decode()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert sink not in js, sink
    assert not re.search(r"setTimeout\(\s*[\"'`]", js)
    assert "http://" not in js and "https://" not in js


# -- state ----------------------------------------------------------------------------------


async def test_state_is_the_view_stamped_with_the_node_clock(
    http: aiohttp.ClientSession, server: KioskServer
) -> None:
    async with http.get(f"{server.url}api/state") as r:
        state = await r.json()
        assert r.headers["Cache-Control"] == "no-store"
    assert state["clock"] in ("ntp", "gps", "unsynced") and state["now_ms"] > 0
    assert state["node"]["id"] == "shuttle-07" and state["buttons"] == [
        "pickup",
        "mediator",
        "service",
    ]


async def test_html_from_dispatch_comes_back_as_a_json_string(
    http: aiohttp.ClientSession, server: KioskServer
) -> None:
    evil = "<script>alert(1)</script>"
    await server.service.command_message({"id": "e", "text": evil})
    async with http.get(f"{server.url}api/state") as r:
        assert r.content_type == "application/json"
        assert (await r.json())["messages"][0]["text"] == evil


async def read_event(stream: aiohttp.StreamReader) -> tuple[str, dict[str, Any]]:
    while True:
        block = (await asyncio.wait_for(stream.readuntil(b"\n\n"), 5)).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])


async def test_events_send_the_state_at_once_then_each_change(
    http: aiohttp.ClientSession, server: KioskServer
) -> None:
    async with http.get(f"{server.url}api/events") as r:
        assert r.content_type == "text/event-stream"
        assert (await r.content.readuntil(b"\n\n")) == b"retry: 1000\n\n"
        event, first = await read_event(r.content)
        assert event == "state" and first["messages"] == []
        await server.service.command_message({"id": "m", "text": "Bonjour"})
        event, second = await read_event(r.content)
        assert event == "state" and second["messages"][0]["text"] == "Bonjour"


async def test_events_tick_with_the_node_clock_when_nothing_changes(
    http: aiohttp.ClientSession, serve: Serve
) -> None:
    server = await serve(heartbeat_s=1)
    async with http.get(f"{server.url}api/events") as r:
        await read_event(r.content)
        event, tick = await read_event(r.content)
    assert event == "tick" and set(tick) == {"now_ms", "clock"}


async def test_more_pages_than_allowed_get_503(http: aiohttp.ClientSession, serve: Serve) -> None:
    server = await serve(max_clients=1)
    async with http.get(f"{server.url}api/events") as first:
        await read_event(first.content)
        async with http.get(f"{server.url}api/events") as second:
            assert second.status == 503
            assert "max_clients" in (await second.json())["message"]


# -- rider requests: the good path ----------------------------------------------------------


async def test_a_press_is_accepted_durable_and_in_the_outbox(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    status, _, body = await post(http, server, {"kind": "pickup", "lang": "fr"})
    assert status == 202 and body["request"]["status"] == "sent" and body["repeat"] is False
    assert body["connected"] is False
    (payload,) = await stored(node, "kiosk/requests")
    assert payload["request_id"] == body["request"]["request_id"]


async def test_a_second_press_soon_answers_200_with_the_same_request(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    _, _, first = await post(http, server, {"kind": "mediator"})
    status, _, again = await post(http, server, {"kind": "mediator"})
    assert status == 200 and again["repeat"] is True
    assert again["request"]["request_id"] == first["request"]["request_id"]
    assert len(await stored(node, "kiosk/requests")) == 1


# -- rider requests: hostile input changes nothing ------------------------------------------


async def assert_nothing_changed(server: KioskServer, node: Node) -> None:
    assert server.service.view()["requests"] == []
    assert await stored(node, "kiosk/requests") == []


async def test_an_oversized_body_gets_413(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    body = json.dumps({"kind": "pickup", "pad": "x" * 5000}).encode()
    status, _, answer = await post(http, server, body)
    assert status == 413 and answer["error"] == "too_large"
    await assert_nothing_changed(server, node)


async def test_an_oversized_chunked_body_gets_413(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"kind": "pickup", "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    async with http.post(f"{server.url}api/requests", data=chunks(), headers=JSON) as r:
        assert r.status == 413
    await assert_nothing_changed(server, node)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"\xff\xfe{}", b'{"kind": "pickup"', b"[" * 2000 + b"]" * 2000, b""],
)
async def test_a_body_that_is_not_json_gets_400(
    http: aiohttp.ClientSession, server: KioskServer, node: Node, raw: bytes
) -> None:
    status, _, answer = await post(http, server, raw)
    assert status == 400 and answer["error"] == "bad_json"
    await assert_nothing_changed(server, node)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "text/html"])
async def test_a_body_that_is_not_declared_json_gets_415(
    http: aiohttp.ClientSession, server: KioskServer, node: Node, ctype: str
) -> None:
    status, _, answer = await post(
        http, server, {"kind": "pickup"}, headers={"Content-Type": ctype}
    )
    assert status == 415 and answer["error"] == "bad_type"
    await assert_nothing_changed(server, node)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": "taxi"},
        {"kind": 1},
        {"kind": ["pickup"]},
        {"kind": None},
        {"kind": "pickup", "lang": "de"},
        {"kind": "pickup", "admin": True},
        {"kind": "service", "service_id": "<script>"},
        {"kind": "service", "service_id": "x" * 65},
        ["pickup"],
        "pickup",
        42,
    ],
)
async def test_a_body_of_the_wrong_shape_gets_422(
    http: aiohttp.ClientSession, server: KioskServer, node: Node, body: Any
) -> None:
    status, _, answer = await post(http, server, body)
    assert status == 422 and answer["error"] == "bad_request" and answer["message"]
    await assert_nothing_changed(server, node)


async def test_a_button_the_screen_does_not_have_gets_422(
    http: aiohttp.ClientSession, serve: Serve, node: Node
) -> None:
    server = await serve(buttons=["mediator"])
    status, _, answer = await post(http, server, {"kind": "pickup"})
    assert status == 422 and answer["error"] == "not_offered"
    await assert_nothing_changed(server, node)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_press_from_another_site_gets_403(
    http: aiohttp.ClientSession, server: KioskServer, node: Node, headers: dict[str, str]
) -> None:
    status, _, answer = await post(http, server, {"kind": "pickup"}, headers=headers)
    assert status == 403 and answer["error"] == "cross_origin"
    await assert_nothing_changed(server, node)


async def test_a_press_from_the_kiosk_page_origin_is_accepted(
    http: aiohttp.ClientSession, server: KioskServer
) -> None:
    origin = server.url.rstrip("/")
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"}
    status, _, _ = await post(http, server, {"kind": "pickup"}, headers=headers)
    assert status == 202


async def test_a_foreign_host_name_gets_421_whatever_the_path(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    for method, path in (("GET", ""), ("GET", "api/state"), ("POST", "api/requests")):
        async with http.request(
            method, f"{server.url}{path}", headers={"Host": "rebind.evil.example", **JSON}
        ) as r:
            assert r.status == 421
            assert "allowed_hosts" in (await r.json())["message"]
    await assert_nothing_changed(server, node)


async def raw_get(server: KioskServer, target: str, host: str) -> bytes:
    """A request as sent by hand: aiohttp sends the absolute form only to a proxy."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    return answer


async def test_an_absolute_target_naming_a_foreign_host_gets_421_whatever_the_host_header(
    server: KioskServer,
) -> None:
    """RFC 9112 3.2.2: the target's host wins over Host, for the DNS-rebinding check too."""
    here = f"127.0.0.1:{server.port}"
    answer = await raw_get(server, "http://rebind.evil.example/api/state", here)
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    answer = await raw_get(server, f"http://{here}/api/state", "rebind.evil.example")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


async def test_a_foreign_host_name_is_not_told_the_names_the_kiosk_answers_to(
    http: aiohttp.ClientSession, serve: Serve
) -> None:
    server = await serve(allowed_hosts=["screen-7.depot.internal"])
    async with http.get(server.url, headers={"Host": "rebind.evil.example"}) as r:
        assert r.status == 421
        body = await r.text()
    assert "screen-7.depot.internal" not in body and "localhost" not in body, body


@pytest.mark.parametrize(
    "host", ["localhost:{port}@rebind.evil.example", "[::1]rebind.evil.example"]
)
async def test_a_host_value_naming_a_foreign_host_after_one_of_ours_is_never_served(
    server: KioskServer, host: str
) -> None:
    answer = await raw_get(server, "/api/state", host.format(port=server.port))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


async def test_a_host_name_in_allowed_hosts_is_served(
    http: aiohttp.ClientSession, serve: Serve
) -> None:
    server = await serve(allowed_hosts=["kiosk.local"])
    async with http.get(server.url, headers={"Host": f"kiosk.local:{server.port}"}) as r:
        assert r.status == 200


async def test_a_flood_of_presses_gets_429_and_one_request(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    answers = [await post(http, server, {"kind": "pickup"}) for _ in range(30)]
    codes = [status for status, _, _ in answers]
    assert codes[:3] == [202, 200, 200] and set(codes[3:]) == {429}
    _, headers, body = answers[-1]
    assert int(headers["Retry-After"]) >= 1 and body["error"] == "rate_limited"
    assert len(await stored(node, "kiosk/requests")) == 1
    assert node.counters["kiosk.http_429"] == 27


async def test_refusals_are_counted_per_status_for_health(
    http: aiohttp.ClientSession, server: KioskServer, node: Node
) -> None:
    await post(http, server, b"junk")
    await post(http, server, {"kind": "taxi"})
    assert node.counters["kiosk.http_400"] == 1 and node.counters["kiosk.http_422"] == 1


async def test_a_flood_of_refused_requests_leaves_its_first_lines_and_its_size_in_the_journal(
    http: aiohttp.ClientSession, server: KioskServer, node: Node, journal: Journal
) -> None:
    """The kiosk logged one refusal per code per 10 s itself, before the log's flood guard:
    the guard never saw the flood, and the journal never said how big it was."""
    for _ in range(100):
        assert (await post(http, server, b"junk"))[0] == 400
    logs.flush()  # the node's stop, or the minute's end
    assert node.counters["kiosk.http_400"] == 100
    refused = journal.with_("refused (400 bad_json)")
    assert len([line for line in refused if "more like this" not in line]) == BURST
    summary = journal.with_("more like this")
    assert len(summary) == 1 and f"{100 - BURST} more like this" in summary[0]


async def test_a_flood_of_one_refusal_does_not_hold_back_the_first_of_another(
    http: aiohttp.ClientSession, server: KioskServer, journal: Journal
) -> None:
    for _ in range(30):
        await post(http, server, b"junk")
    await post(http, server, {"kind": "taxi"})
    assert len(journal.with_("refused (422 bad_request)")) == 1


# -- running --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def on_a_taken_port(
    node: Node, tries: int
) -> AsyncIterator[tuple[socket.socket, KioskServer]]:
    """The kiosk started on a port another socket listens on, once it has failed `tries`
    times; closing the socket frees the port."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    server = KioskService(node.host, KioskConfig(port=taken.getsockname()[1])).server
    task = asyncio.create_task(server.run())
    try:
        for _ in range(200):
            if node.counters["kiosk.listen_error"] >= tries:
                break
            await asyncio.sleep(0.02)
        assert node.counters["kiosk.listen_error"] >= tries and not task.done()
        yield taken, server
    finally:
        taken.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_port_in_use_is_logged_counted_and_retried_without_stopping_anything(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kiosk_server, "BIND_RETRY_S", (0.05, 0.1))
    async with on_a_taken_port(node, tries=2) as (taken, server):
        assert "[services.kiosk] port" in caplog.text
        port = taken.getsockname()[1]
        taken.close()
        await asyncio.wait_for(server.listening.wait(), 5)
        assert server.port == port


async def test_a_port_in_use_is_said_once_at_error_level_however_often_it_is_retried(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kiosk_server, "BIND_RETRY_S", (0.02, 0.02))
    async with on_a_taken_port(node, tries=5) as (taken, server):
        said = [r for r in caplog.records if "cannot listen" in r.getMessage()]
        assert [r.levelname for r in said if r.levelno >= logging.INFO] == ["ERROR"]
        assert f"127.0.0.1:{taken.getsockname()[1]}" in said[0].getMessage()
        assert "the kiosk page is not served" in said[0].getMessage()
        taken.close()
        await asyncio.wait_for(server.listening.wait(), 5)
        assert any("the port is free at last" in r.getMessage() for r in caplog.records)


async def test_stopping_with_a_page_connected_ends_within_a_second(
    http: aiohttp.ClientSession, node: Node
) -> None:
    server = KioskService(node.host, KioskConfig(port=0)).server
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.listening.wait(), 5)
    async with http.get(f"{server.url}api/events") as r:
        await read_event(r.content)
        started = asyncio.get_running_loop().time()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_the_url_names_the_bound_port(server: KioskServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_the_url_of_a_page_on_every_address_answers(
    serve: Serve, http: aiohttp.ClientSession, host: str
) -> None:
    """What the log tells the screen to open: `::` listens on IPv6 alone (asyncio sets
    IPV6_V6ONLY), so its loopback is [::1], as the browser policy allows (tools/kiosk_policy.py)."""
    server = await serve(host=host)
    async with http.get(server.url) as r:
        assert r.status == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "pickup", "\\ud800": 1}',  # a lone surrogate: not encodable as UTF-8
        b'{"kind": "pickup", "a\\nkiosk: forged line\\u001b[2J": 1}',
    ],
)
async def test_a_key_with_line_breaks_or_escapes_is_named_escaped_never_raw(
    http: aiohttp.ClientSession,
    server: KioskServer,
    node: Node,
    body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown key is named in the refusal, with what cannot be shown as text escaped: a
    line break or an escape sequence in a key went to the log (and the page) as it was, so a
    visitor could write a line of their own into the node's journal."""
    with caplog.at_level(logging.WARNING):
        status, _, answer = await post(http, server, body)
    assert status == 422 and answer["error"] == "bad_request"
    assert not any(c in answer["message"] for c in "\n\x1b\ud800")
    assert not any(r.exc_info for r in caplog.records)
    assert not any(c in r.getMessage() for r in caplog.records for c in "\n\x1b\ud800")
    await assert_nothing_changed(server, node)
