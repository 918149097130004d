"""Who is asking the web form: the trusted proxies (MAILBOT_TRUSTED_PROXIES) and the client behind them.

Pure, and apart from the rest of the form's rules so that the settings can check the proxies without loading
the mail stack.
"""

from __future__ import annotations

import ipaddress


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """MAILBOT_TRUSTED_PROXIES: comma-separated addresses or CIDR ranges; ValueError names a bad one."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an address or a CIDR range") from None
    return tuple(networks)


def client_address(peer: str, forwarded_for: str | None,
                   trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """The client: the peer, unless the peer is a trusted proxy, then the right-most X-Forwarded-For entry that
    is not one of ours (entries further left were written by whoever sent the request, and prove nothing)."""
    def ours(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not forwarded_for or not ours(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not ours(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
