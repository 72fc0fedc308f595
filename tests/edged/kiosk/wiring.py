"""The `kiosk/requests` topic, until it is in `edged.topics.TOPICS`.

`Publication.make` only accepts tabled topics. Once the table has `kiosk/requests`, the
table's own spec is used and nothing is patched.
"""

import pytest

from edged.kiosk.payloads import KioskRequest
from edged.topics import TOPICS, Priority, TopicSpec

KIOSK_REQUESTS = TOPICS.get("kiosk/requests") or TopicSpec(
    "kiosk/requests", KioskRequest, Priority.EVENT, qos=1, retain=False
)


def add_kiosk_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    if "kiosk/requests" not in TOPICS:
        monkeypatch.setitem(TOPICS, "kiosk/requests", KIOSK_REQUESTS)
