"""The captive-portal checks phones make when they join a network, and what each expects
from the internet. On the hotspot, a phone that has not accepted the terms gets none of
these answers: its names all resolve to the node (the captive DNS) and its tcp/80 reaches
the portal, which redirects every foreign request to itself. So the phone shows its
"sign in to the network" page, and that page is the portal.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    system: str
    host: str
    path: str
    online: str
    """What the phone gets from the real internet when there is no portal."""


PROBES = (
    Probe("Android", "connectivitycheck.gstatic.com", "/generate_204", "204 No Content"),
    Probe("Android", "clients3.google.com", "/generate_204", "204 No Content"),
    Probe("Android", "www.google.com", "/gen_204", "204 No Content"),
    Probe("Android", "play.googleapis.com", "/generate_204", "204 No Content"),  # AOSP fallback
    Probe("iOS, macOS", "captive.apple.com", "/hotspot-detect.html", "200 with Success"),
    Probe("iOS, macOS", "www.apple.com", "/library/test/success.html", "200 with Success"),
    Probe("Windows", "www.msftconnecttest.com", "/connecttest.txt", "Microsoft Connect Test"),
    Probe("Windows", "www.msftncsi.com", "/ncsi.txt", "Microsoft NCSI"),
    Probe("Firefox", "detectportal.firefox.com", "/canonical.html", "a fixed page"),
    Probe("Firefox", "detectportal.firefox.com", "/success.txt", "success"),
)
