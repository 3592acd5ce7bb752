"""Next-hop MACs learned from the frames an agent sees, and the core's own frames addressed with
them as they leave (the namespace tests run it against a router with nothing arranged for it)."""

from __future__ import annotations

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Port, Send
from dysco.runtime.core._neighbours import UNADDRESSED, Neighbours
from dysco.runtime.core._types import ip_int

HOST_MAC = bytes.fromhex("0200000001aa")
ROUTER_MAC = bytes.fromhex("0200000002bb")
PEER_MAC = bytes.fromhex("0200000003cc")
ME, PEER, FAR = ip_int("10.0.1.2"), ip_int("10.0.1.3"), ip_int("10.0.9.9")


def tcp(src_mac: bytes, dst_mac: bytes, src: int, dst: int) -> bytes:
    return pk.TcpFrame(dst_mac, src_mac, src, dst, 1000, 80, 1, 0, pk.SYN).to_bytes()


def control_to(dst: int) -> bytes:
    return cw.udp_frame(ME, dst, 9797, b"x" * 20)


def test_nothing_learned_leaves_the_frame_as_it_is() -> None:
    frame = control_to(FAR)
    assert frame[0:12] == UNADDRESSED * 2
    assert Neighbours().address(frame) is frame


def test_a_frame_from_the_network_teaches_the_gateway_the_host_and_its_source() -> None:
    n = Neighbours()
    n.learn(tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET)
    out = n.address(control_to(FAR))
    assert out[0:6] == ROUTER_MAC and out[6:12] == HOST_MAC
    assert out[12:] == control_to(FAR)[12:]
    # anyone else: through the last hop frames from the network came from
    assert n.address(control_to(ip_int("10.0.7.7")))[0:6] == ROUTER_MAC


def test_an_on_link_peer_gets_its_own_mac_and_others_the_gateway() -> None:
    n = Neighbours()
    n.learn(tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET)
    n.learn(tcp(PEER_MAC, HOST_MAC, PEER, ME), Port.NET)
    assert n.address(control_to(PEER))[0:6] == PEER_MAC
    n.learn(tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET)  # the gateway is the last hop again
    assert n.address(control_to(FAR))[0:6] == ROUTER_MAC
    assert n.address(control_to(PEER))[0:6] == PEER_MAC


def test_a_frame_from_the_host_teaches_what_the_host_resolved() -> None:
    n = Neighbours()
    n.learn(tcp(HOST_MAC, PEER_MAC, ME, PEER), Port.HOST)
    out = n.address(control_to(PEER))
    assert out[0:6] == PEER_MAC and out[6:12] == HOST_MAC
    # nothing from the network yet: anyone else through the hop the host itself last sent to
    # (a host that has only sent, such as a client whose every answer the NIC translated)
    assert n.address(control_to(FAR))[0:6] == PEER_MAC
    n.learn(tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET)
    assert n.address(control_to(ip_int("10.0.7.7")))[0:6] == ROUTER_MAC  # the gateway, once seen


def test_frames_the_core_passes_on_keep_their_macs() -> None:
    n = Neighbours()
    n.learn(tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET)
    frame = tcp(HOST_MAC, PEER_MAC, ME, FAR)
    assert n.address(frame) is frame


def test_broadcast_and_multicast_are_not_learned_and_the_table_is_bounded() -> None:
    n = Neighbours(limit=2)
    n.learn(tcp(b"\xff" * 6, HOST_MAC, FAR, ME), Port.NET)
    n.learn(tcp(ROUTER_MAC, b"\x01\x00\x5e\x00\x00\x01", FAR, ME), Port.NET)
    assert n.own is None and n.by_ip == {FAR: ROUTER_MAC}
    for i in range(5):
        n.learn(tcp(PEER_MAC, HOST_MAC, PEER + i, ME), Port.NET)
    assert list(n.by_ip) == [PEER + 3, PEER + 4]


def test_the_agent_addresses_its_control_messages_from_what_it_saw() -> None:
    from dysco.runtime.core import Agent, Config
    from dysco.runtime.core._events import Reason

    agent = Agent(Config(address=ME, name="c"))
    agent.packet_in(0, tcp(ROUTER_MAC, HOST_MAC, FAR, ME), Port.NET, Reason.OTHER)
    out = agent._finish([Send(control_to(FAR), Port.NET), Send(control_to(FAR), Port.HOST)])
    sends = [a for a in out if isinstance(a, Send)]
    assert sends[0].frame[0:12] == ROUTER_MAC + HOST_MAC
    assert sends[1].frame[0:12] == UNADDRESSED * 2  # toward the host: not the network's next hop
