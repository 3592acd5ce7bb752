"""tests/e2e/peers.py's payloads: the sizes docs/operations.md uses by hand must work."""

from __future__ import annotations

from .peers import payload


def test_a_payload_larger_than_randbytes_takes() -> None:
    """docs/operations.md's splice walk-through sends 300 MB each way; ``randbytes`` alone
    refuses more than 256 MiB (OverflowError), which is what the peers hit before."""
    big = payload(1, 300_000_000)
    assert len(big) == 300_000_000
    assert big[: 3 << 20] == payload(1, 3 << 20)  # the same stream, whatever the length
    assert payload(2, 1000) != payload(1, 1000)
