"""Time left on a certificate or revocation list, from the ASN.1 times community.crypto reports."""

from __future__ import annotations

from datetime import UTC, datetime


def tls_seconds_left(asn1_time: str) -> float:
    """Seconds from now until ``asn1_time`` (like 20271204223200Z, UTC); negative once it has passed."""
    end = datetime.strptime(str(asn1_time), "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    return (end - datetime.now(UTC)).total_seconds()


class FilterModule:
    def filters(self):
        return {"tls_seconds_left": tls_seconds_left}
