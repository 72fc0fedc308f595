"""The node's small HTTP/1.1 server: the kiosk's page and the captive portal run on it.

h11 parses (sans-IO, no C code, strict about framing); this package adds what a node open
to its riders needs around it: a request and a response type (`message`), a router
(`router`), Server-Sent Events (`sse`), a gate that counts connections before anything is
read (`gate`), the connection loop with its time limits (`server`), and the bound on a
connection's unacknowledged data, which the fleet feed's page uses too (`tcp`). It replaced
aiohttp in the daemon, which cost ~12 MB of a Pi Zero's memory for three routes
(docs/kiosk.md).
"""
