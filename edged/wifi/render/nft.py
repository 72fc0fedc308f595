"""The hotspot's firewall as one nftables file: isolation, the captive redirects, rate caps.

What a phone on the hotspot can reach:

- before accepting: DHCP (for the sending device's own MAC only), the captive DNS (every
  udp/53 it sends is answered by the node, which names every host as itself) and the
  portal (every tcp/80 it sends goes there); https fails at once (a reset), everything
  else is refused;
- after accepting (its MAC *and* IP in the `allowed` set, with a timeout): the internet
  through the uplinks, at most `client_mbit` each way and `total_mbit` for all phones,
  FLOWS_PER_PHONE flows at once and NEW_TCP_PER_S new TCP connections a second (the node's
  connection table is not one phone's); never the node's other networks (private,
  link-local, CGNAT, multicast destinations);
- never: the node's other ports (ssh, the kiosk screen's port, a local broker…), another
  phone (forwarding from the hotspot back to it), IPv6 of any kind.

- all phones together: `max_flows` flows open, through the node and to it, so the
  connection table keeps room for the node's own (its MQTT link, the kiosk); the default
  is half a Pi Zero 2 W's table (4096), and what the phones' finished connections leave
  is not counted (see NEW_TCP_PER_S).

Loading the file replaces the whole table at once (`nft -f` is one transaction); the set
of accepted phones starts empty and the daemon puts back the sessions it knows.

A second file (render_timeouts, its own table) shortens how long the kernel keeps the
phones' finished flows: a kernel without conntrack timeouts refuses it, and the firewall
above works without it.
"""

from edged.config.wifi import WifiConfig
from edged.wifi.layout import (
    ALLOWED_SET,
    HELD_BY_SET,
    HELD_SET,
    HOLD_S,
    OWNERS_SET,
    TABLE,
    TIMEOUTS_TABLE,
)

NOT_INTERNET = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
)
"""Destinations a phone never reaches through the node: its other networks (the vehicle
LAN, a cellular router's admin page, a carrier's CGNAT neighbours), multicast, reserved."""
DNS_PER_S = 20
DHCP_PER_S = 5
DHCP_BURST = 10
"""DHCP packets a phone (by MAC) may send the node: a client sends a few to join or renew,
and retries after seconds. Each from another source port (or address) is a flow, kept
30 s unanswered (the server answers to port 68), in no count of flows."""
NEW_CONNECTIONS_PER_S = 20
PINGS_PER_S = 5
DNS_TCP_PER_PHONE = 2
"""Resolver connections (tcp/53, the fallback for a truncated answer) a phone may hold: a
stub resolver opens one per query, and dnsmasq serves 20 at once for all phones (its
MAX_PROCS), each kept up to 150 s; one phone holding 20 idle ones left every other phone
without TCP DNS. A SYN over the share is dropped: the phone's retry gets through when one
of its own connections closes."""
METER_SIZE = 1024
FLOWS_PER_PHONE = 512
"""Flows one phone (by MAC) may have through the node at once: the node's connection
tracking table (nf_conntrack_max) is shared with its own traffic, and one phone at its rate
cap could otherwise fill it (every new connection of the node then dropped). A phone's
browser and apps use a few hundred at most. Counted by MAC, not address: the flows a phone
that left keeps open in the table are not counted against the next phone DHCP gives its
address to."""
NEW_TCP_PER_S = 20
NEW_TCP_BURST = 100
"""New TCP connections a phone (by MAC) may open through the node: a second's page load
(HTTP/1.1 browsers open 6 per host, a heavy page tens of hosts) in the burst, then 20 a
second. The count above (nf_conncount) does not count a connection once it is closed
(TIME_WAIT, CLOSE), while the kernel keeps it in the table (TIME_WAIT 120 s): without a
rate a phone opening and closing connections at its bandwidth cap left thousands."""
TCP_ESTABLISHED_S = 7440
"""An idle established TCP connection of a phone: RFC 5382 REQ-5's least (2 h 4 min), in
place of the kernel's 5 days (a phone that left kept its connections in the table)."""
TCP_CLOSED_S = 5
"""A phone's TCP connection once closed (TIME_WAIT, CLOSE), in place of 120 s and 10 s: the
phone's own stack keeps TIME_WAIT; what the node would still carry is a late
retransmission, which a new flow's rules then judge."""
DNS_FLOW_S = 5
"""A phone's DNS query (udp/53 anywhere, the captive DNS's port), in place of 30 s (120 s
once the kernel calls it a stream): a query is answered in well under that. A DHCP request
(udp/67) too: its answer goes to port 68, never on the request's own flow."""


def kbytes(mbit: float) -> int:
    """nft's kbytes are 1024 bytes; at least 1."""
    return max(1, round(mbit * 1_000_000 / 8 / 1024))


def quoted(names: list[str]) -> str:
    inner = ", ".join(f'"{n}"' for n in names)
    return f"{{ {inner} }}" if len(names) > 1 else inner


def render_nft(wifi: WifiConfig, *, source: str) -> str:
    hs = f'"{wifi.interface}"'
    net = wifi.address.network
    portal, dns = wifi.portal.port, wifi.portal.dns_port
    client, total = kbytes(wifi.client_mbit), kbytes(wifi.total_mbit)
    who = f"ether saddr . ip saddr @{ALLOWED_SET}"
    stranger = f"ether saddr . ip saddr != @{ALLOWED_SET}"
    out_ok = (
        f"iifname {hs} oifname != {quoted(wifi.uplinks)} counter drop"
        if wifi.uplinks
        else "# any interface but the hotspot may carry phones out (no [wifi] uplinks)"
    )
    masq = f"oifname {quoted(wifi.uplinks)}" if wifi.uplinks else f"oifname != {hs}"
    size = max(64, 4 * wifi.max_clients)
    dns_cap = f"limit rate over {DNS_PER_S}/second burst {2 * DNS_PER_S} packets"
    dhcp_cap = f"limit rate over {DHCP_PER_S}/second burst {DHCP_BURST} packets"
    open_cap = f"ct count over {wifi.portal.max_connections_per_peer}"
    dns_open_cap = f"ct count over {DNS_TCP_PER_PHONE}"
    ping_cap = f"limit rate over {PINGS_PER_S}/second"
    reset = "reject with tcp reset"
    conn_cap = (
        f"limit rate over {NEW_CONNECTIONS_PER_S}/second burst {2 * NEW_CONNECTIONS_PER_S} packets"
    )
    flow_cap = f"add @flows {{ ether saddr ct count over {FLOWS_PER_PHONE} }}"
    phones_cap = f"add @phones {{ iifname ct count over {wifi.max_flows} }}"
    tcp_cap = (
        f"update @tcp_rate {{ ether saddr limit rate over {NEW_TCP_PER_S}/second "
        f"burst {NEW_TCP_BURST} packets }}"
    )
    prohibited = "reject with icmpx type admin-prohibited"
    one = f"limit rate over {client} kbytes/second burst {client} kbytes"
    all_ = f"limit rate over {total} kbytes/second burst {total} kbytes"
    return f"""#!/usr/sbin/nft -f
# Generated by `edged wifi apply` from {source}: edit that file and apply again.
# The riders' hotspot on {wifi.interface} ({wifi.address}); docs/wifi.md says what each rule is for.

table inet {TABLE}
delete table inet {TABLE}

table inet {TABLE} {{
    # Phones that accepted the terms: MAC and address together, for the session's length.
    set {ALLOWED_SET} {{
        type ether_addr . ipv4_addr
        flags timeout
        timeout {wifi.session_min}m
        size {size}
    }}
    # Per-phone meters (forgotten a minute after the phone goes quiet): through the node by
    # address (an accepted phone has one: its session's), to the node by MAC (a phone may
    # take many addresses, each would have a cap of its own).
    set up_rate {{ type ipv4_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    set down_rate {{ type ipv4_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    set dns_rate {{ type ether_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    set dhcp_rate {{ type ether_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    set conn_rate {{ type ether_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    set ping_rate {{ type ether_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    # Portal connections open per phone, by MAC: the same whatever addresses it takes.
    set conn_open {{ type ether_addr; flags dynamic; size {METER_SIZE}; }}
    # Resolver connections (tcp/53) open per phone, by MAC: dnsmasq serves 20 at once, all
    # phones together.
    set dns_open {{ type ether_addr; flags dynamic; size {METER_SIZE}; }}
    # Flows through the node per phone, by MAC: a phone that left keeps its flows in the
    # table for a while, not counted against the next phone given its address.
    set flows {{ type ether_addr; flags dynamic; size {METER_SIZE}; }}
    # New TCP connections through the node per phone, by MAC (closed ones are not counted
    # in @flows, but stay in the table).
    set tcp_rate {{ type ether_addr; flags dynamic, timeout; timeout 1m; size {METER_SIZE}; }}
    # Flows of all phones together (one element: the hotspot's interface), through the
    # node and to it: room left in the table for the node's own.
    set phones {{ type ifname; flags dynamic; size 4; }}
    # (MAC, MAC) of each phone asking DHCP: a request whose (sender, chaddr) is not in it
    # asks for another device than the one sending it (an equality test nft can do).
    set dhcp_self {{
        typeof @ll,48,48 . @ih,224,48
        flags dynamic, timeout
        timeout 1m
        size {METER_SIZE}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        # the hotspot's services (portal, captive DNS, DHCP, resolver) are the phones': a
        # host beside an uplink (the venue's LAN) routing to the hotspot address gets none
        iifname != {{ {hs}, "lo" }} ip daddr {wifi.address.ip} counter drop
        iifname != {hs} return
        meta nfproto ipv6 counter drop comment "the hotspot is IPv4 only"
        # the node is at its hotspot address for the phones (and DHCP's broadcast): a DNS
        # server, a portal port, of the node at another of its addresses (a vehicle LAN's
        # resolver, loopback's) is not theirs
        ip daddr != {{ {wifi.address.ip}, 255.255.255.255 }} counter drop
        # DHCP for the device that sends the request only (ethernet, 6-byte chaddr, the
        # frame's own MAC; dnsmasq ignores client ids): one lease per MAC on the radio, not
        # the whole pool from made-up MACs (DHCP starvation: no address for the next phone)
        udp dport 67 @ih,8,16 != 0x0106 counter drop
        udp dport 67 update @dhcp_self {{ @ll,48,48 . @ll,48,48 }}
        udp dport 67 @ll,48,48 . @ih,224,48 != @dhcp_self counter drop
        # accepted before the counts of flows: each request from another port is a flow
        # kept 30 s unanswered, so a phone's rate of them
        udp dport 67 update @dhcp_rate {{ ether saddr {dhcp_cap} }} counter drop
        udp dport 67 accept comment "DHCP"
        # the caps on every packet, before conntrack's shortcut: the queries of one source
        # port, the pings of one identifier are ESTABLISHED after their first reply
        udp dport {{ 53, {dns} }} update @dns_rate {{ ether saddr {dns_cap} }} counter drop
        # the resolver for phones that accepted, on every packet: a stranger's new udp/53
        # was redirected to the captive DNS above, so what still comes to 53 is a flow
        # opened before its session ended (conntrack's shortcut would keep it, a tunnel)
        meta l4proto {{ udp, tcp }} th dport 53 {stranger} counter drop
        icmp type echo-request update @ping_rate {{ ether saddr {ping_cap} }} counter drop
        ct state established,related accept
        # the resolver, or the captive DNS before accepting
        udp dport {{ 53, {dns} }} goto admit
        # dnsmasq answers tcp/53 with one worker per connection, 20 at most, held while the
        # connection stays (up to 150 s): a phone's share, or one holds them all
        tcp dport 53 ct state new add @dns_open {{ ether saddr {dns_open_cap} }} drop
        tcp dport 53 {who} goto admit
        tcp dport {portal} ct state new update @conn_rate {{ ether saddr {conn_cap} }} counter drop
        # a phone's share of the portal's connections, however many addresses it takes
        tcp dport {portal} ct state new add @conn_open {{ ether saddr {open_cap} }} {reset}
        tcp dport {portal} goto admit comment "the portal (tcp/80 is redirected to it)"
        icmp type echo-request goto admit
        tcp dport 443 reject with tcp reset comment "https before the portal: fail at once"
        counter drop comment "ssh, the kiosk screen, a broker, anything else of the node"
    }}

    # What the input chain lets in. All phones' flows together leave room in the table for
    # the node's own: counted here, where a flow is let in, not before the input chain's
    # drops (a dropped flow leaves no entry, but its tuple stayed in the count until a
    # later clean-up: a phone sending to closed ports filled all phones' share)
    chain admit {{
        ct state new {phones_cap} counter {prohibited}
        accept
    }}

    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname {hs} oifname {hs} counter drop comment "phone to phone"
        iifname {hs} meta nfproto ipv6 counter drop
        oifname {hs} meta nfproto ipv6 counter drop
        iifname {hs} {stranger} meta l4proto tcp reject with tcp reset
        iifname {hs} {stranger} reject with icmpx type admin-prohibited
        {out_ok}
        iifname {hs} ip daddr {{ {", ".join(NOT_INTERNET)} }} counter drop
        # the node's connection table is shared with its own traffic: not one phone's.
        # A closed connection stays in it (TIME_WAIT) but not in the counts below: a
        # phone's rate of new ones (dropped: the SYN's retry gets through a second later;
        # first, so a dropped SYN costs no walk of the counts' lists)
        iifname {hs} meta l4proto tcp ct state new {tcp_cap} counter drop
        iifname {hs} ct state new {flow_cap} counter {prohibited}
        iifname {hs} ct state new {phones_cap} counter {prohibited}
        iifname {hs} update @up_rate {{ ip saddr {one} }} drop
        iifname {hs} {all_} drop
        iifname {hs} accept
        oifname {hs} update @down_rate {{ ip daddr {one} }} drop
        oifname {hs} {all_} drop
        oifname {hs} ct state established,related accept
        oifname {hs} counter drop comment "nothing from outside starts a connection to a phone"
    }}

    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname != {hs} return
        fib daddr type local tcp dport 80 redirect to :{portal} comment "the portal by address"
        {stranger} tcp dport 80 redirect to :{portal} comment "every web page: the portal"
        {stranger} udp dport 53 redirect to :{dns} comment "every name: the node"
    }}

    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {net} {masq} masquerade
    }}
}}

table arp {TABLE}
delete table arp {TABLE}

# An accepted phone's address is its own to the node's neighbour table: another device's ARP
# claiming it (gratuitous, reply or request) would have the node send that phone's traffic
# from the internet to the other device. Held while the phone itself speaks ARP (its
# replies to the node's probes keep it), so a departed phone's address is free again long
# before DHCP may give it to the next phone.
table arp {TABLE} {{
    # the daemon's copy of `inet {TABLE} {ALLOWED_SET}` (the same pairs, in one transaction)
    set {OWNERS_SET} {{
        type ether_addr . ipv4_addr
        flags timeout
        timeout {wifi.session_min}m
        size {size}
    }}
    set {HELD_SET} {{ type ipv4_addr; flags dynamic, timeout; timeout {HOLD_S}s; size {size}; }}
    set {HELD_BY_SET} {{
        type ether_addr . ipv4_addr
        flags dynamic, timeout
        timeout {HOLD_S}s
        size {size}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != {hs} accept
        arp saddr ether . arp saddr ip @{OWNERS_SET} update @{HELD_SET} {{ arp saddr ip }} \
            update @{HELD_BY_SET} {{ arp saddr ether . arp saddr ip }} accept
        # the phone that held it, its session over: it must reach the portal to accept again
        arp saddr ether . arp saddr ip @{HELD_BY_SET} accept
        arp saddr ip @{HELD_SET} counter drop comment "another device claiming a phone's address"
    }}
}}
"""


def render_timeouts(wifi: WifiConfig, *, source: str) -> str:
    """How long the kernel keeps the phones' flows, in a table of its own: a kernel built
    without conntrack timeouts (CONFIG_NF_CONNTRACK_TIMEOUT) refuses this file, and the
    firewall of render_nft, loaded apart, works without it. A timeout is given to a flow
    on its first packet, once conntrack has made its entry and before the entry is
    confirmed (priority mangle, after conntrack's -200: at priority raw there is no entry
    yet and the kernel, 6.x, ignores the statement)."""
    hs = f'"{wifi.interface}"'
    dns = wifi.portal.dns_port
    closed = TCP_CLOSED_S
    tcp_policy = f"established: {TCP_ESTABLISHED_S}, time_wait: {closed}, close: {closed}"
    # Named after their values: nft does not update a ct timeout in place, so a file that
    # changes one makes another; the old, unused, goes with the table (hotspot off, reboot).
    tcp, udp = f"phone_tcp_{TCP_ESTABLISHED_S}_{closed}", f"phone_dns_{DNS_FLOW_S}"
    return f"""#!/usr/sbin/nft -f
# Generated by `edged wifi apply` from {source}: edit that file and apply again.
# How long the node keeps the riders' flows on {wifi.interface} in its connection table;
# docs/wifi.md ("What a phone can reach") says why. Loaded apart from hotspot.nft: a
# kernel without conntrack timeouts refuses this file, the firewall works without it.
# Loaded again, it keeps its table and the timeouts in it, and replaces the rules only:
# the kernel takes a deleted timeout back from every flow given it (those of the phones'
# live connections would be its own 5 days again).

table inet {TIMEOUTS_TABLE} {{
    # idle established: RFC 5382's least (the kernel's own is 5 days); closed: 5 s
    ct timeout {tcp} {{
        protocol tcp;
        l3proto ip;
        policy = {{ {tcp_policy} }};
    }}
    # a DNS query and its answer (the kernel's own: 30 s, 120 s as a "stream"); a DHCP
    # request (answered to port 68, never on its own flow: the kernel's 30 s)
    ct timeout {udp} {{
        protocol udp;
        l3proto ip;
        policy = {{ unreplied: {DNS_FLOW_S}, replied: {DNS_FLOW_S} }};
    }}
    chain prerouting {{
        type filter hook prerouting priority mangle; policy accept;
    }}
}}
flush chain inet {TIMEOUTS_TABLE} prerouting

table inet {TIMEOUTS_TABLE} {{
    chain prerouting {{
        iifname != {hs} return
        meta l4proto tcp ct timeout set "{tcp}"
        udp dport {{ 53, 67, {dns} }} ct timeout set "{udp}"
    }}
}}
"""
