"""`edgectl broker-check URL`: before deploying, what a broker does that edged relies on.

Each probe makes the broker do what a fleet will make it do (two clients, real reconnects,
an abrupt TCP drop), and says ok / limited / missing with what edged does about it. The run
fails (exit 1) when something edged needs is missing, 4 when the broker cannot be reached or
refuses the login.
"""

import sys
from collections.abc import Awaitable, Callable

import aiomqtt

from edged.ops.brokercheck import probes
from edged.ops.brokercheck.render import as_json, print_table
from edged.ops.brokercheck.result import Finding, Verdict
from edged.ops.client import BrokerUnreachableError, Say
from edged.ops.login import Login

CHECK_EPILOG = """exit codes:
  0  nothing edged needs is missing (limited items say what edged does about them)
  1  something edged needs is missing
  2  usage error
  4  the broker could not be reached or refused the login

Give it the login dispatch will use (e.g. --cert dispatch.crt): the probes publish and
subscribe under PREFIX/_check/RUN/cmd/, which the fleet ACL lets dispatch write."""

Probe = Callable[[probes.Run], Awaitable[Finding | list[Finding]]]

PROBES: list[tuple[str, str, bool, Probe]] = [
    ("will", "will on abrupt disconnect", True, probes.will),
    ("retained_wildcard", "retained to wildcard subscribers", True, probes.retained),
    ("qos1_redelivery", "QoS 1 redelivery across a reconnect", True, probes.session),
    ("topic_dots", "topic names kept as sent (dots)", True, probes.dots),
    ("response_topic", "MQTT 5 response topic", False, probes.response_topic),
    ("shared_subscriptions", "shared subscriptions", False, probes.shared),
    ("max_packet_size", "max packet size", True, probes.packet_size),
    ("receive_maximum", "receive maximum vs the node's window", True, probes.receive_maximum),
    ("tls_resumption", "TLS session resumption", False, probes.tls_resumption),
]


async def run_checks(
    login: Login, prefix: str, *, window: int = 32, wait_s: float = 3.0, say: Say | None = None
) -> tuple[list[Finding], str]:
    """Every probe in turn; raises `BrokerUnreachableError` when none can connect."""
    run = probes.Run(login, prefix, wait_s, window, say)
    findings = [await probes.protocols(run)]
    run.note(f"probing with MQTT {run.version} under {run.base}/")
    for key, title, needed, probe in PROBES:
        run.note(f"probe: {title}")
        try:
            got = await probe(run)
        except (BrokerUnreachableError, aiomqtt.MqttError, OSError) as exc:
            got = Finding(
                key,
                title,
                Verdict.MISSING,
                f"the probe failed: {exc}",
                "see the broker's log",
                needed,
            )
        findings.extend(got if isinstance(got, list) else [got])
    return findings, run.version


async def broker_check(
    login: Login,
    prefix: str,
    *,
    window: int = 32,
    wait_s: float = 3.0,
    as_json_output: bool = False,
    say: Say | None = None,
) -> int:
    try:
        findings, version = await run_checks(login, prefix, window=window, wait_s=wait_s, say=say)
    except BrokerUnreachableError as exc:
        if as_json_output:
            print(as_json([], login.address.url, None, error=str(exc)))
        print(f"edgectl: {exc}", file=sys.stderr)
        return 4
    if as_json_output:
        print(as_json(findings, login.address.url, version))
    else:
        print_table(findings, login.address.url, version)
    return 1 if any(f.fails for f in findings) else 0


__all__ = ["CHECK_EPILOG", "broker_check", "run_checks"]
