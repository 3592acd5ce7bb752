"""Frame builders shared by the softswitch tests."""

from __future__ import annotations

from dysco.softswitch.targets.python.runtime import csum16


def ipv4_frame(dst: str = "10.1.2.3", ttl: int = 64, payload: bytes = bytes(30)) -> bytes:
    ip = bytearray(20)
    ip[0] = 0x45
    ip[2:4] = (20 + len(payload)).to_bytes(2, "big")
    ip[8] = ttl
    ip[9] = 17
    ip[12:16] = bytes([10, 0, 0, 1])
    ip[16:20] = bytes(int(x) for x in dst.split("."))
    ip[10:12] = csum16(bytes(ip)).to_bytes(2, "big")
    return bytes.fromhex("000000000001aabbccddeeff0800") + bytes(ip) + payload
