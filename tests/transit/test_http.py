"""The feed over HTTP: conditional requests, gzip, SIRI Lite's shape, /health, the page's
headers — through aiohttp's test server, the service being the real one."""

import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.transit import gtfs_realtime_pb2 as rt

from edged.transit.server import FeedServer, TileError, tile_origin
from edged.transit.service import FeedService
from tests.transit.support import (
    ADDED,
    NOW,
    SCHEDULED,
    Clock,
    feed,
    journey,
    msg,
    occupancy,
    position,
    put,
    vehicle,
)

VP = "/gtfs-rt/vehicle-positions"


@pytest.fixture
def service() -> FeedService:
    s = feed(Clock(NOW))
    s.status.connected = lambda: True
    for i in range(20):  # enough for gzip to matter
        vehicle(s, f"shuttle-{i:02d}", run=SCHEDULED if i % 2 else ADDED)
    return s


@pytest.fixture
async def client(service: FeedService) -> AsyncIterator[TestClient]:
    server = FeedServer(service, tile_url="https://tiles.example.org/{z}/{x}/{y}.png")
    async with TestClient(TestServer(server.app)) as c:
        yield c


async def test_an_unchanged_feed_answers_304_to_its_etag(client: TestClient) -> None:
    first = await client.get(VP)
    assert first.status == 200 and first.headers["Content-Type"] == "application/x-protobuf"
    etag = first.headers["ETag"]
    again = await client.get(VP, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""


async def test_if_modified_since_answers_304_until_the_feed_changes(
    client: TestClient, service: FeedService
) -> None:
    first = await client.get(VP)
    since = first.headers["Last-Modified"]
    assert (await client.get(VP, headers={"If-Modified-Since": since})).status == 304
    service.clock.t += 2  # type: ignore[attr-defined]
    put(service, "shuttle-00", "position", position(lat=45.96, seq=2, at=NOW + 2))
    changed = await client.get(
        VP, headers={"If-Modified-Since": since, "If-None-Match": first.headers["ETag"]}
    )
    assert changed.status == 200 and changed.headers["ETag"] != first.headers["ETag"]


async def test_an_unchanged_feed_polled_later_is_stamped_anew_and_still_answers_304(
    client: TestClient, service: FeedService
) -> None:
    """Its header says when it was generated (a header 40 s old would be 2 min old at the
    next poll: W008), while its validators stay the content's."""
    first = await client.get(VP)
    service.clock.t = NOW + 40  # type: ignore[attr-defined]
    later = await client.get(VP)
    message = rt.FeedMessage()
    message.ParseFromString(await later.read())
    assert message.header.timestamp == int(NOW + 40)
    assert later.headers["ETag"] == first.headers["ETag"]
    assert later.headers["Last-Modified"] == first.headers["Last-Modified"]
    assert (await client.get(VP, headers={"If-None-Match": first.headers["ETag"]})).status == 304
    since = {"If-Modified-Since": first.headers["Last-Modified"]}
    assert (await client.get(VP, headers=since)).status == 304
    json_form = await (await client.get(VP + ".json")).json()
    assert json_form["header"]["timestamp"] == str(int(NOW + 40))


async def test_a_client_that_accepts_gzip_gets_the_same_feed_compressed(client: TestClient) -> None:
    plain = await (await client.get(VP, headers={"Accept-Encoding": "identity"})).read()
    zipped = await client.get(VP, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert (
        zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    )
    raw = await zipped.read()
    assert gzip.decompress(raw) == plain and len(raw) < len(plain)
    refused = await client.get(VP, headers={"Accept-Encoding": "gzip;q=0"}, auto_decompress=False)
    assert "Content-Encoding" not in refused.headers


async def test_siri_lite_has_the_french_profile_shape(client: TestClient) -> None:
    body = await (await client.get("/siri-lite/vehicle-monitoring.json")).json()
    delivery = body["Siri"]["ServiceDelivery"]
    assert delivery["ProducerRef"] == "edged" and delivery["ResponseTimestamp"].endswith("Z")
    (vm,) = delivery["VehicleMonitoringDelivery"]
    assert vm["Version"] == "2.0" and vm["Status"] == "true" and len(vm["VehicleActivity"]) == 20
    by_ref = {a["VehicleMonitoringRef"]["value"]: a for a in vm["VehicleActivity"]}
    timetabled = by_ref["creuse/shuttle-01"]
    mvj = timetabled["MonitoredVehicleJourney"]
    assert mvj["LineRef"] == {"value": "creuse-shuttle"}
    assert mvj["FramedVehicleJourneyRef"]["DatedVehicleJourneyRef"] == "creuse-shuttle-0800"
    assert mvj["PublishedLineName"] == [{"value": "1"}]
    assert mvj["VehicleLocation"] == {"Longitude": 2.1683, "Latitude": 45.9558}
    assert mvj["Bearing"] == 271.5 and mvj["Occupancy"] == "seatsAvailable"
    assert mvj["VehicleRef"] == {"value": "creuse/shuttle-01"}
    assert timetabled["RecordedAtTime"].endswith("Z")
    added = by_ref["creuse/shuttle-00"]["MonitoredVehicleJourney"]
    assert added["FramedVehicleJourneyRef"]["DataFrameRef"] == {"value": "2027-01-15"}
    assert added["DirectionRef"] == {"value": "0"}


async def test_siri_response_timestamp_is_when_the_response_was_made_even_if_nothing_changed(
    client: TestClient, service: FeedService
) -> None:
    await client.get("/siri-lite/vehicle-monitoring.json")
    service.clock.t = NOW + 40  # type: ignore[attr-defined]
    body = await (await client.get("/siri-lite/vehicle-monitoring.json")).json()
    delivery = body["Siri"]["ServiceDelivery"]
    now = datetime.fromtimestamp(NOW + 40, UTC).isoformat().replace("+00:00", "Z")
    assert delivery["ResponseTimestamp"] == now
    assert delivery["VehicleMonitoringDelivery"][0]["ResponseTimestamp"] == now


async def test_the_json_form_is_the_same_feed(client: TestClient) -> None:
    body = await (await client.get(VP + ".json")).json()
    assert body["header"]["gtfs_realtime_version"] == "2.0" and len(body["entity"]) == 20


async def test_health_is_503_while_the_broker_is_lost(
    client: TestClient, service: FeedService
) -> None:
    ok = await client.get("/health")
    assert ok.status == 200 and (await ok.json())["vehicles"]["served"] == 20
    service.status.connected = lambda: False
    lost = await client.get("/health")
    assert lost.status == 503 and (await lost.json())["broker"]["connected"] is False


async def test_the_page_and_its_files_carry_the_kiosk_csp_with_the_tile_origin(
    client: TestClient,
) -> None:
    page = await client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "trusted-types 'none'" in csp
    assert "img-src 'self' https://tiles.example.org" in csp
    assert 'src="/static/fleet.js"' in await page.text()
    for name in ("fleet.js", "fleet.css", "favicon.svg"):
        assert (await client.get(f"/static/{name}")).status == 200
    missing = await client.get("/static/../../etc/passwd")
    assert missing.status == 404


async def test_the_page_stream_starts_with_the_whole_fleet(client: TestClient) -> None:
    events = await client.get("/api/events")
    head = b""
    while b"\n\n" not in head.split(b"\n\n", 1)[-1] and len(head) < 200_000:
        head += await events.content.readany()
        if head.count(b"\n\n") >= 2:
            break
    frame = head.split(b"\n\n")[1]
    assert frame.startswith(b"event: fleet\ndata: ")
    data = json.loads(frame.split(b"data: ", 1)[1])
    assert data["full"] and len(data["vehicles"]) == 20 and data["connected"]
    events.close()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/{z}/{x}/{y}",
        "https://x/tiles.png",
        'https://x/{z}/{x}/{y}.png" onload=x',
        "javascript:1",
    ],
)
def test_a_tile_url_that_cannot_be_used_is_refused(url: str) -> None:
    with pytest.raises(TileError):
        tile_origin(url)


SIRI_VM = "/siri-lite/vehicle-monitoring.json"


@pytest.mark.parametrize(
    ("suffix", "payload"),
    [
        ("occupancy", occupancy(count=29, status="STANDING_ROOM_ONLY", percent=97)),
        ("position", position(lat=45.96, seq=2)),
        ("journey", journey(**{**SCHEDULED, "headsign": "Aubusson"})),
        ("journey", journey()),  # the run cleared
        ("state", msg(state="offline")),  # the vehicle leaves the feed
    ],
    ids=["occupancy", "position", "headsign", "run-cleared", "offline"],  # the payloads
    # carry the time they were made: as ids, xdist's workers would each collect others
)
async def test_siri_answers_304_while_its_content_is_the_same_and_a_new_tag_when_it_changes(
    client: TestClient, service: FeedService, suffix: str, payload: bytes
) -> None:
    """SIRI Lite is polled like GTFS-RT: its ResponseTimestamp and ResponseMessageIdentifier
    are new at every response, its (weak) ETag is the vehicles' content's. Anything a
    vehicle activity shows changes the tag, or a poller holding the old one keeps it."""
    first = await client.get(SIRI_VM)
    service.clock.t += 5  # type: ignore[attr-defined]
    held = await client.get(SIRI_VM, headers={"If-None-Match": first.headers["ETag"]})
    assert held.status == 304
    fresh = await (await client.get(SIRI_VM)).json()
    assert fresh["Siri"]["ServiceDelivery"]["ResponseTimestamp"].endswith("Z")
    put(service, "shuttle-01", suffix, payload)
    service.clock.t += 1  # type: ignore[attr-defined]
    changed = await client.get(SIRI_VM, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status == 200 and changed.headers["ETag"] != first.headers["ETag"]
    again = await client.get(SIRI_VM, headers={"If-None-Match": changed.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(
    "since",
    [
        "Mon, 1 Jan 99999999999 00:00:00 GMT",  # a year past a C long: OverflowError
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 01 Jan 0000 00:00:00 GMT",
        "Mon, 01 Jan 2020 00:00:00 +9999",
        "not a date",
    ],
)
async def test_an_if_modified_since_that_is_no_date_is_ignored_not_a_500(
    client: TestClient, since: str
) -> None:
    # RFC 9110 13.1.3: a value that is not a valid HTTP-date is ignored; a 500 also logged
    # a traceback per request, which any client could repeat
    for path in (VP, "/siri-lite/vehicle-monitoring.json"):
        r = await client.get(path, headers={"If-Modified-Since": since})
        assert r.status in (200, 304), (path, since, r.status)
        assert r.status == 200 or since.startswith("Fri, 31 Dec 9999")
