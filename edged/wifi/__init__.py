"""The riders' hotspot: the access point, its firewall and the captive portal (docs/wifi.md).

`edged wifi apply` (run as root) turns `[wifi]` into the machine's access point, DHCP, DNS
and firewall (config, render/, plan, validate, apply); the daemon serves the phones: the
portal that is the kiosk page, the captive DNS, the sessions of phones that accepted the
terms, and counts for `health` (portal, dns, sessions, service).
"""
