"""Pure helpers of webhooks: the signature scheme, backoff and the public-address rule."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from batchops.engine import backoff_s
from batchops.server.webhooks.signing import new_secret, sign
from batchops.server.webhooks.targets import is_public
from tests.webhooks.webhook_receiver import verify


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() -> None:
    body = b'{"event":"job.succeeded"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1_700_000_000, body) == f"sha256={expected}"


def test_the_documented_verification_accepts_a_fresh_signature_and_nothing_else() -> None:
    secret, body, now = new_secret(), b'{"a": 1}', int(time.time())
    good = sign(secret, now, body)
    assert verify(secret, str(now), body, good)
    assert not verify(secret, str(now), body + b" ", good)
    assert not verify(secret + "x", str(now), body, good)
    assert not verify(secret, str(now + 1), body, good)
    old = now - 3600
    assert not verify(secret, str(old), body, sign(secret, old, body))


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    waits = [backoff_s(n, initial_s=0.5, max_s=3.0) for n in range(1, 6)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_s(10_000, initial_s=1.0, max_s=60.0) == 60.0


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.5", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_only_globally_routable_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public
