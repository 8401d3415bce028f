"""Special-use addresses (RFC 6890 and the IANA special-purpose registries) that a client ID metadata document's
host must not resolve to (draft-ietf-oauth-client-id-metadata-document -01 section 6.5), as judged by
:func:`gateway.policy.uris.is_public_address`, which the ``jwks_uri`` check shares."""

from __future__ import annotations

import pytest

from gateway.policy.uris import is_public_address


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0", "0.1.2.3",  # noqa: S104 - "this network" 0/8, as data
        "10.0.0.1", "172.16.0.1", "192.168.1.1",  # RFC 1918
        "100.64.0.1", "100.127.255.254",  # shared address space (CGNAT) RFC 6598
        "127.0.0.1", "127.255.0.1",  # loopback
        "169.254.169.254",  # link-local (cloud metadata)
        "192.0.0.1", "192.0.0.8", "192.0.0.9", "192.0.0.170",  # IETF protocol assignments RFC 6890
        "192.0.2.1", "198.51.100.1", "203.0.113.1",  # documentation
        "192.88.99.1",  # 6to4 relay anycast, deprecated (RFC 7526)
        "198.18.0.1",  # benchmarking
        "224.0.0.1", "239.255.255.250",  # multicast
        "240.0.0.1", "255.255.255.255",  # reserved, broadcast
        "::", "::1",  # unspecified, loopback
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
        "::127.0.0.1", "::8.8.8.8",  # IPv4-compatible, deprecated (RFC 4291 2.5.5.1)
        "::ffff:0:7f00:1",  # IPv4-translated (RFC 2765) carrying 127.0.0.1
        "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 (RFC 6052) carrying special-use v4
        "64:ff9b:1::1",  # local-use NAT64 (RFC 8215)
        "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::1",  # 6to4 (RFC 3056) carrying special-use v4
        "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "2001:db8::1", "3fff::1",  # documentation (RFC 3849, RFC 9637)
        "2001:10::1", "2001:20::1",  # ORCHID
        "100::1",  # discard-only
        "5f00::1",  # SRv6 SIDs (RFC 9602)
        "fc00::1", "fd12:3456::1",  # unique-local
        "fe80::1", "fe80::1%eth0",  # link-local
        "fec0::1",  # site-local, deprecated (RFC 3879)
        "ff02::1", "ff0e::1",  # multicast
    ],
)  # fmt: skip
def test_special_use_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8", "1.1.1.1", "93.184.215.14", "160.79.104.10",
        "2001:4860:4860::8888", "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped public
        "64:ff9b::808:808",  # NAT64 of a public v4
        "2002:808:808::1",  # 6to4 of a public v4
    ],
)  # fmt: skip
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)
