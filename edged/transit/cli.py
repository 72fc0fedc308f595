"""`edgectl feed`'s options: which fleets, where to listen, what to check and show."""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.zones import check_zone, zone_database

if TYPE_CHECKING:  # aiohttp and protobuf load only when the feed runs, not for every edgectl
    from edged.transit.run import FeedOptions

EPILOG = """endpoints:
  /gtfs-rt/vehicle-positions        GTFS-Realtime VehiclePositions (protobuf; .json: JSON)
  /siri-lite/vehicle-monitoring.json  SIRI Lite VehicleMonitoring
  /health                           200 while the broker is connected, else 503
  /                                 the live fleet page for dispatch (--no-page: none)

See docs/feed.md for a production layout (broker cluster, replicas, TLS, read-only ACL)."""


def add_parser(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser
) -> None:
    feed = sub.add_parser(
        "feed",
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="serve the fleet as GTFS-Realtime, SIRI Lite and a live page for dispatch",
    )
    feed.add_argument(
        "--fleet",
        action="append",
        default=[],
        metavar="FLEET",
        help="serve this fleet (repeat for more; default: every fleet under the prefix)",
    )
    feed.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="where to serve HTTP (default: 127.0.0.1:8080)",
    )
    feed.add_argument(
        "--max-age",
        type=float,
        default=90.0,
        metavar="S",
        help="leave out vehicles whose last fix is older (default: 90)",
    )
    feed.add_argument(
        "--gtfs",
        type=Path,
        metavar="ZIP",
        help="static GTFS (zip or folder) to check assigned route and trip ids",
    )
    feed.add_argument(
        "--timezone",
        metavar="ZONE",
        help="service days of trips without a start_date (default: the static "
        "GTFS agency's, else Europe/Paris)",
    )
    feed.add_argument(
        "--producer", default="edged", metavar="REF", help="SIRI ProducerRef (default: edged)"
    )
    feed.add_argument(
        "--max-vehicles",
        type=int,
        default=10_000,
        metavar="N",
        help="vehicles kept in memory at most (default: 10000)",
    )
    feed.add_argument(
        "--no-page",
        action="store_true",
        help="serve the feeds only, no fleet page (a public replica)",
    )
    feed.add_argument(
        "--max-pages",
        type=int,
        default=64,
        metavar="N",
        help="live pages streaming at once; more get 503 and retry (default: "
        "64; each stream ends after 10 min and reconnects)",
    )
    feed.add_argument(
        "--max-connections",
        type=int,
        default=4096,
        metavar="N",
        help="connections open at once; more are closed as soon as accepted (default: "
        "4096, lowered to what the descriptor limit allows)",
    )
    feed.add_argument(
        "--max-connections-per-peer",
        type=int,
        default=64,
        metavar="N",
        help="connections one IPv4 address or IPv6 /64 may hold (default: 64; behind a "
        "reverse proxy, set it to --max-connections: every connection is the proxy's)",
    )
    feed.add_argument(
        "--tile-url",
        metavar="URL",
        help="map tiles for the page, e.g. https://tile.example/{z}/{x}/{y}.png",
    )
    feed.add_argument("--tile-attribution", metavar="TEXT", help="credit shown under the map")
    feed.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def options(args: argparse.Namespace, prefix: str, fleets: list[str]) -> "FeedOptions":
    from edged.transit.run import FeedOptions
    from edged.transit.service import FeedSettings

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {args.listen!r}: expected HOST:PORT, e.g. 0.0.0.0:8080")
    if not 0 < args.max_age <= 86400:
        raise ValueError("--max-age: a number of seconds between 0 and 86400")
    if not 1 <= args.max_vehicles <= 1_000_000:
        raise ValueError("--max-vehicles: between 1 and 1000000")
    if not 1 <= args.max_pages <= 10_000:
        raise ValueError("--max-pages: between 1 and 10000")
    if not 1 <= args.max_connections <= 1_000_000:
        raise ValueError("--max-connections: between 1 and 1000000")
    if not 1 <= args.max_connections_per_peer <= args.max_connections:
        raise ValueError("--max-connections-per-peer: between 1 and --max-connections")
    if not args.producer.isprintable() or not 0 < len(args.producer) <= 64:
        raise ValueError("--producer: printable text of at most 64 characters")
    if args.timezone is not None:
        try:
            check_zone(args.timezone)
        except ValueError as exc:
            if not zone_database():  # every name is unknown: say what is missing
                raise ValueError(f"--timezone: {exc}") from None
            raise ValueError(
                f"--timezone {args.timezone!r}: not an IANA time zone, e.g. Europe/Paris"
            ) from None
    return FeedOptions(
        prefix=prefix,
        fleets=tuple(fleets),
        host=host.strip("[]"),
        port=int(port),
        settings=FeedSettings(
            max_age_s=args.max_age,
            producer=args.producer,
            max_vehicles=args.max_vehicles,
            timezone=args.timezone,
        ),
        gtfs=args.gtfs,
        page=not args.no_page,
        max_pages=args.max_pages,
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        tile_url=args.tile_url,
        tile_attribution=args.tile_attribution,
    )
