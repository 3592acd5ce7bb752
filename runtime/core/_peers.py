"""The agents this one authenticated, each with a cell of the NIC's peer meter.

The NIC meters every punt under its reason (docs/dataplane.md, "Punt rate limits"), so a flood
of Dysco SYNs from spoofed sources takes the budget of the legitimate ones too.  Once an agent
has authenticated a message from another agent of its domain (a Dysco SYN or a control message
whose MAC verified, whose replay check passed and whose stamp names the packet's own source),
it gives that source a cell of its own in ``DyscoIngress.peer_meter``: the source's Dysco SYNs
and control messages are metered there from then on, whatever the rest of the network sends.

The cells are few (``DYSCO_PEER_CELLS``); when all are taken, the agent least recently
authenticated gives its cell up to the new one.  Only a holder of the domain's key can take a
cell, so only the domain's own agents move each other out.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from dysco.runtime.core import _auth as auth
from dysco.runtime.core._events import Action, Peer
from dysco.runtime.core._syn_payload import Tag


class Peers:
    def __init__(self, cells: int, metrics: Counter[str]) -> None:
        self.cells = cells
        """Cells of the peer meter this agent may hand out; 0: none (a NIC without the table)."""
        self.metrics = metrics
        self._cell: OrderedDict[int, int] = OrderedDict()
        """Address -> cell, the least recently authenticated first."""

    def __len__(self) -> int:
        return len(self._cell)

    def items(self) -> list[tuple[int, int]]:
        """(address, cell) of every known agent: what the NIC's table holds."""
        return list(self._cell.items())

    def verified(self, src: int, tag: Tag, out: list[Action]) -> None:
        """A message from ``src`` verified under its ``tag``: the sender the tag's stamp names
        is :meth:`authenticated` if it is ``src`` (not a message some other host relayed)."""
        if self.cells and auth.Stamp.unpack(tag.value).sender == src:
            self.authenticated(src, out)

    def authenticated(self, address: int, out: list[Action]) -> None:
        """A message from ``address`` was authenticated: give it a cell if it has none."""
        if not self.cells:
            return
        if address in self._cell:
            self._cell.move_to_end(address)
            return
        replaces: int | None = None
        if len(self._cell) < self.cells:
            cell = len(self._cell)
        else:
            replaces, cell = self._cell.popitem(last=False)
            self.metrics["peers.replaced"] += 1
        self._cell[address] = cell
        self.metrics["peers.learned"] += 1
        out.append(Peer(address, cell, replaces))
