"""The info kiosk: a local web page for riders, served by the daemon.

Nothing is imported here on purpose: `edged.topics` imports `edged.kiosk.payloads`, and an
import of the server or service from this package would close an import cycle. Import
`edged.kiosk.server.start_kiosk` and the others from their modules.
"""
