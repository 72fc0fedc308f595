"""The info kiosk's parts: the rider page's HTTP server and its limits, the models of what
dispatch and riders send it, and the `kiosk/requests` payload. The kiosk service itself
(its view, its commands) is `edged.services.kiosk`."""
