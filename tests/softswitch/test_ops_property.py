"""Compiled equals direct evaluation: tests/softswitch/stf/ops.p4 against a Python model of P4 arithmetic."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dysco.softswitch import Switch, load_program

OPS = Path(__file__).parent / "stf" / "ops.p4"
ETH = bytes.fromhex("000000000001000000000002") + b"\x12\x34"


@cache
def switch() -> Switch:
    return Switch(load_program(OPS))


def signed8(x: int) -> int:
    return x - 256 if x >= 128 else x


def model(a: int, b: int, s: int, t: int) -> bytes:
    sv, tv = signed8(s), signed8(t)
    out = [
        (a + b) & 0xFF,  # add
        min(a + b, 0xFF),  # sadd
        max(b - a, 0),  # ssub
        (b - a) & 0xFF,  # sub
        a,  # cat (high byte)
        b,  # cat (low byte)
        (a << 2) & 0xFF,  # shl
        a >> 3,  # shr
        (sv >> 1) & 0xFF,  # sshr (arithmetic)
        max(min(tv + tv, 127), -128) & 0xFF,  # ssat
        a >> 4,  # slice a[7:4]
        (-a) & 0xFF,  # neg
        ~a & 0xFF,  # not
        (a * 3) & 0xFF,  # mul
        a // 16,  # div
        a % 32,  # mod
        1 if sv < tv else 2,  # cond
        ((sv & 0xFFFF) >> 8) & 0xFF,  # cast: sign-extended to 16 bits, high byte
        1 if sv < tv else 0,  # cmp
        0x0A,  # setslice
        0x55 if a & 0x0F == 0 else 0xAA,  # prec: & binds tighter than ==
    ]
    return bytes(out)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_ops_match_the_model(a: int, b: int, s: int, t: int) -> None:
    inp = bytes([a, b, s, t])
    out = switch().process(1, ETH + inp)
    assert out == [(2, ETH + inp + model(a, b, s, t))]
