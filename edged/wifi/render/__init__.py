"""Config to files: one module per tool (nftables, hostapd, dnsmasq, NetworkManager, systemd).

Each renderer is a pure function of the config; `edged.wifi.plan` gathers their output and
`edged wifi apply` writes it. The tests run each tool's own validator on the output.
"""
