"""Coverage-guided fuzzing (atheris, libFuzzer) of the two decoders agents expose to the network.

``make soak`` runs it for a bounded time::

    python -m tests.security.fuzz_decoders -max_total_time=60

The first input byte picks the target: the Dysco SYN payload or the control message, each
without keys, with keys on arbitrary bytes, or a message sealed from the input and then mutated
by it.  Anything but the decoder's own ``PeerError`` subclass (or, for a mutated sealed message,
any acceptance) is a finding; libFuzzer stops and writes the input to ``crash-*``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from dysco.runtime.core import _auth as auth
    from dysco.runtime.core import _control_messages as cw
    from dysco.runtime.core import _syn_payload as wire
    from dysco.runtime.core._types import FiveTuple

RING = auth.KeyRing({1: bytes(range(32)), 2: bytes(range(32, 80))}, current=2)
ME = 0x0A000002
NOW = 1_700_000_000 * auth.SECOND


def _tuple(fdp: atheris.FuzzedDataProvider) -> FiveTuple:
    return FiveTuple(fdp.ConsumeIntInRange(0, 2**32 - 1), fdp.ConsumeIntInRange(0, 2**32 - 1), 1, 2)


def _sealed_then_mutated(fdp: atheris.FuzzedDataProvider, control: bool) -> None:
    hops = tuple(fdp.ConsumeIntInRange(0, 2**32 - 1) for _ in range(fdp.ConsumeIntInRange(1, 4)))
    when = NOW + fdp.ConsumeIntInRange(-auth.WINDOW, auth.WINDOW)
    if control:
        msg = cw.Message(cw.Kind(fdp.ConsumeIntInRange(1, 15)), fdp.ConsumeIntInRange(0, 2**32 - 1), 1, 2, 3)
        data = cw.encode(msg, RING, sender=7, receiver=ME, now=when)
    else:
        data = wire.encode(wire.SynPayload(_tuple(fdp), hops), RING, sender=7, receiver=ME, now=when)
    at = fdp.ConsumeIntInRange(0, len(data))
    cut = fdp.ConsumeIntInRange(0, 8)
    mutated = data[:at] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)) + data[at + cut :]
    if mutated == data:
        return
    try:
        if control:
            cw.decode(mutated, RING, auth.ReplayGuard(ME), now=NOW)
        else:
            _, rest = wire.decode(mutated, RING, auth.ReplayGuard(ME), now=NOW)
            if mutated == data + rest:
                return  # bytes after the payload are the SYN's own data, not covered (docs/protocol.md §5)
    except (wire.BadPayload, cw.BadControl):
        return
    raise AssertionError(f"a mutated sealed message was accepted: {data.hex()} -> {mutated.hex()}")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 5)
    if mode == 4 or mode == 5:
        _sealed_then_mutated(fdp, control=mode == 5)
        return
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    keys = RING if mode >= 2 else None
    guard = auth.ReplayGuard(ME) if keys else None
    try:
        if mode % 2 == 0:
            wire.decode(body, keys, guard, now=NOW)
        else:
            cw.decode(body, keys, guard, now=NOW)
    except (wire.BadPayload, cw.BadControl):
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
