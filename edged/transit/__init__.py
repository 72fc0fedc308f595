"""The fleet side's transit feed: the fleet's MQTT traffic as GTFS-Realtime VehiclePositions,
SIRI Lite VehicleMonitoring and a live fleet page for dispatch (`edgectl feed`).

Not to be confused with `edged.ops.feed`, the tools' MQTT subscriber that this service reads
the broker with. Everything here is rebuilt from the broker's retained messages and the
live traffic, so any number of replicas serve the same feed (docs/feed.md)."""
