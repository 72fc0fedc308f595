"""`kiosk/requests` payload: safe to import from `edged.topics`, and privacy-minded."""

import subprocess
import sys

from edged.kiosk.payloads import KioskRequest
from tests.helpers.nodes import ROOT


def test_the_payload_module_imports_nothing_that_imports_the_topic_table() -> None:
    # edged.topics will import this module for its table: it must not need edged.topics
    code = (
        "import sys, edged.kiosk.payloads; "
        "bad = [m for m in ('edged.topics', 'edged.services.kiosk', 'edged.kiosk.server') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_payload_carries_no_field_about_the_person() -> None:
    fields = set(KioskRequest.model_fields)
    assert not fields & {"name", "phone", "card_ref", "uid", "address", "ip", "client"}
