"""An off-path attacker in the simulation: while legitimate sessions run (and one is reconfigured),
it injects malformed, mutated, forged and replayed control messages and Dysco SYNs, spoofing
the agents' addresses.  The sessions must arrive byte-exact and every injected frame must be
refused and counted.

``test_malformed_injections_are_refused_and_counted`` checks what holds without keys: frames
the decoders refuse by their structure.  ``test_with_keys_every_injection_is_refused_and_counted``
adds forgeries, exact replays and arbitrary mutations, which only a MAC and the replay guard can
refuse; it needs the agent wired to ``runtime/core/_auth.py`` (``Config(keys=...)``, the Messenger
and the SYN path sealing and verifying) and is an expected failure until then.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from dysco import p4names
from dysco.errors import PeerError
from dysco.runtime.core import SECOND
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core import _packet as pk
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._types import ip_int
from dysco.runtime.sim import MS, World
from dysco.softswitch.api import Program

from ..runtime.simworld import SERVER, chain_world, check_clean, request, respond

ATTACKER = ip_int("10.0.0.66")
CONNS = 4
LINGER = 40 * SECOND
RING = auth.KeyRing({1: bytes(range(32))}, current=1)


@dataclass
class Tap:
    """What the attacker overheard: control datagrams and Dysco SYNs, with their source."""

    control: list[bytes] = field(default_factory=list)
    syns: list[bytes] = field(default_factory=list)

    def __call__(self, frame: bytes) -> bool:
        with_payload = _dysco_syn(frame)
        if with_payload is not None:
            self.syns.append(frame)
        elif _control(frame) is not None:
            self.control.append(frame)
        return False  # the tap only listens


def _control(frame: bytes) -> tuple[int, int, bytes] | None:
    """(source, destination, message) of a control datagram or in-band segment."""
    try:
        return cw.parse_udp(frame, p4names.CONTROL_UDP_PORT)
    except PeerError:
        pass
    try:
        seg = ib.parse(frame)
    except PeerError:
        return None
    return seg.tuple.src, seg.tuple.dst, seg.data


def _reframed(like: bytes, body: bytes, reflect: bool = False) -> bytes:
    """``body`` in ``like``'s envelope (from its sender to its receiver, or the other way)."""
    try:
        seg = ib.parse(like)
    except PeerError:
        src, dst, _ = _control(like) or (0, 0, b"")
        if reflect:
            src, dst = dst, src
        return cw.udp_frame(src, dst, p4names.CONTROL_UDP_PORT, body)
    if reflect:
        return ib.frame(seg.tuple.reversed(), not seg.leftward, seg.ack, seg.seq, body, seg.relay)
    return ib.frame(seg.tuple, seg.leftward, seg.seq, seg.ack, body, seg.relay)


def _relayed(frame: bytes) -> bool:
    try:
        return ib.parse(frame).relay
    except PeerError:
        return False


def _dysco_syn(frame: bytes) -> pk.TcpFrame | None:
    try:
        f = pk.parse(frame)
    except PeerError:
        return None
    return f if f.syn_only and wire.has_magic(f.payload) else None


@dataclass
class Attacker:
    world: World
    rng: random.Random
    sent: Counter[int] = field(default_factory=Counter)
    """Injected frames per destination address."""
    relayed: Counter[int] = field(default_factory=Counter)
    """Of those, exact copies of an anchor's in-band message (passed on by the agent between)."""

    def inject(self, at: int, frame: bytes) -> None:
        dst = int.from_bytes(frame[30:34], "big")
        self.sent[dst] += 1
        self.world.sim.at(at, lambda: self.world.net.send(ATTACKER, frame))

    def control(self, at: int, like: bytes, body: bytes) -> None:
        """A control message with ``body``, spoofed as ``like``'s sender to ``like``'s receiver
        (a datagram, or an in-band segment on the same five-tuple)."""
        self.inject(at, _reframed(like, body))

    def syn(self, at: int, like: bytes, payload: bytes) -> None:
        """A Dysco SYN with ``payload`` on a fresh subsession (a live one's entry would translate
        it instead of punting it), spoofed from ``like``'s sender to its receiver."""
        f = _dysco_syn(like)
        assert f is not None
        self.inject(at, replace(f, sport=50000 + self.rng.randrange(10000), payload=payload).to_bytes())


def _set(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _malformed_control(body: bytes, rng: random.Random) -> list[bytes]:
    """Control messages every decoder refuses by their structure, keys or not."""
    tag = cw.FIXED - 4 + 4 * body[10]  # the tag header's offset
    return [
        _set(body, 0, b"X"),  # magic
        _set(body, 4, b"\x02"),  # version
        body[:-1],  # truncated
        body + b"\0",  # longer than its length
        _set(body, 11, b"\x01"),  # reserved
        _set(body, tag, b"\x07"),  # unknown tag type
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120))),  # noise
    ]


def _malformed_payloads(payload: bytes) -> list[bytes]:
    """Dysco SYN payloads every decoder refuses by their structure (the magic stays, so the NIC
    punts them)."""
    return [
        _set(payload, 4, b"\x02"),  # version
        _set(payload, 8, b"\x00"),  # no hops
        _set(payload, 8, b"\x11"),  # 17 hops
        _set(payload, 9, b"\x01"),  # flags
        _set(payload, 6, b"\xff\xff"),  # length beyond the data
        payload[:10],  # truncated
    ]


def _drops(world: World) -> dict[int, int]:
    """Per agent address: control messages and Dysco SYNs refused and counted (an anchor's
    in-band message that an agent between the anchors could not pass on included)."""
    out = {}
    for h in world.hosts.values():
        if h.agent is not None:
            m = h.agent.metrics
            out[h.address] = sum(
                v
                for k, v in m.items()
                if k.startswith(("drops.control.", "drops.bad_payload.")) or k == "control.relay_unrouted"
            )
    return out


def _all_counted(world: World, attacker: Attacker) -> None:
    """Every injection refused and counted once: at the agent it was sent to, except an anchor's
    in-band message that verified at an agent between the anchors and was passed on (an exact
    replay): the anchor it is for refuses it."""
    drops = _drops(world)
    assert sum(drops.values()) == sum(attacker.sent.values()), (drops, attacker.sent)
    assert all(drops[a] >= attacker.sent[a] - attacker.relayed[a] for a in drops), (drops, attacker.sent)


def _run(
    program: Program, seed: int, attack: Callable[[Attacker, Tap, int], None], **config: object
) -> tuple[World, Attacker]:
    w, client, server = chain_world(program, 1, seed=seed, **config)
    tap = Tap()
    w.net.faults.drop_if = tap
    conns = []
    for i in range(CONNS):
        w.sim.at(i * MS, lambda i=i: conns.append(client.connect(ip_int(SERVER), 80, request(i) * 200)))
    w.sim.run_for(6 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None and ch.agent.sessions
    sid = min(ch.agent.sessions)
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))  # delete the middlebox
    w.sim.run_for(40 * MS)
    assert tap.control and tap.syns, "the attacker overheard control messages and Dysco SYNs"
    attacker = Attacker(w, random.Random(seed))
    attack(attacker, tap, w.sim.now)
    w.sim.run_for(LINGER)
    for i, c in enumerate(conns):
        assert c.done and not c.reset, f"connection {i}: {c}"
        assert bytes(c.received) == respond(request(i) * 200), f"connection {i}: response differs"
    assert sorted(bytes(c.received) for c in server.conns.values()) == sorted(
        request(i) * 200 for i in range(CONNS)
    )
    assert ch.agent.metrics["reconf.completed"] == 1
    check_clean(w)
    return w, attacker


@pytest.mark.parametrize("seed", [1, 2])
def test_malformed_injections_are_refused_and_counted(dysco_program: Program, seed: int) -> None:
    def attack(a: Attacker, tap: Tap, now: int) -> None:
        for i, frame in enumerate(tap.control):
            for j, body in enumerate(_malformed_control(_control(frame)[2], a.rng)):  # type: ignore[index]
                a.control(now + (i * 7 + j) * MS, frame, body)
        for i, frame in enumerate(tap.syns):
            f = _dysco_syn(frame)
            assert f is not None
            for j, payload in enumerate(_malformed_payloads(f.payload)):
                a.syn(now + (i * 7 + j) * MS, frame, payload)

    w, attacker = _run(dysco_program, seed, attack)
    assert sum(attacker.sent.values()) > 50
    assert _drops(w) == {addr: attacker.sent[addr] for addr in _drops(w)}  # structure: refused at once


def _any_mutation(data: bytes, rng: random.Random, start: int = 0) -> bytes:
    at = rng.randrange(start, len(data))
    return _set(data, at, bytes([data[at] ^ (1 << rng.randrange(8))]))


@pytest.mark.parametrize("seed", [1, 2])
def test_with_keys_every_injection_is_refused_and_counted(dysco_program: Program, seed: int) -> None:
    def attack(a: Attacker, tap: Tap, now: int) -> None:
        for i, frame in enumerate(tap.control):
            body = _control(frame)[2]  # type: ignore[index]
            msg = cw.decode(body, RING)  # the attacker can read, not seal
            forged = [
                cw.encode(replace(msg, msg_id=msg.msg_id ^ 0x5A5A, tag=cw.Tag())),  # no MAC
                cw.encode(replace(msg, msg_id=msg.msg_id ^ 0x5A5A)),  # the old MAC on a new message
                _any_mutation(body, a.rng),
                body,  # an exact replay, within the window
            ]
            for j, data in enumerate(forged):
                a.control(now + (i * 7 + j) * MS, frame, data)
            a.control(now + 31 * SECOND + i * MS, frame, body)  # replayed after the window
            if _relayed(frame):
                a.relayed[_control(frame)[1]] += 2  # type: ignore[index]
            a.inject(now + (i * 7 + 5) * MS, _reframed(frame, body, reflect=True))  # to its own sender
        for i, frame in enumerate(tap.syns):
            f = _dysco_syn(frame)
            assert f is not None
            p, _ = wire.decode(f.payload, RING)
            unsealed = wire.encode(replace(p, tag=wire.Tag()))
            # any bit but the magic's (without it the NIC passes an ordinary SYN, not an agent's business)
            mutated = _any_mutation(f.payload[: p.encoded_size()], a.rng, start=4)
            for j, payload in enumerate([unsealed, mutated]):
                a.syn(now + (i * 7 + j) * MS, frame, payload)
            # the very SYN again once its session ended (before, the NIC translates it as a
            # packet of that session and never punts it): within the window, and after it
            a.inject(now + 10 * SECOND + i * MS, frame)
            a.inject(now + 31 * SECOND + i * MS, frame)

    w, attacker = _run(dysco_program, seed, attack, keys=RING)
    assert sum(attacker.relayed.values()) > 0, "no anchor's in-band message was overheard"
    _all_counted(w, attacker)
