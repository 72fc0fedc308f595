"""The TLS context for the broker: one definition for the uplink and `edged doctor`."""

import ssl

from edged.config.models import BrokerConfig


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext:
    """Verify the broker's certificate and host name; present ours when configured."""
    assert cfg.tls is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the cert and the host name
    context.verify_mode = ssl.CERT_REQUIRED
    if cfg.tls.cert_file is not None:
        context.load_cert_chain(
            str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
        )
    context.load_verify_locations(str(cfg.tls.ca_file))
    return context
