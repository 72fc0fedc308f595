"""The riders' hotspot: the access point, its firewall and the captive portal (docs/wifi.md).

`edged wifi apply` (run as root) turns `[wifi]` into the machine's access point, DHCP, DNS
and firewall (render/, plan, validate, apply; the `[wifi]` models are edged/config/wifi.py);
the daemon serves the phones: the portal that is the kiosk page, the captive DNS, the
sessions of phones that accepted the terms (portal, dns, sessions). The service that runs
them and counts for `health` is `edged.services.wifi`.
"""
