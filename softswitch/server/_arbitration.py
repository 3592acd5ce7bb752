"""Client arbitration for one device, without I/O (PI's rules).

Controllers are streams identified by an int.  The primary is the connected
controller with the highest election id.  Every change returns the arbitration
replies to send, as :class:`Notice` values; the stream adapter writes them.

* A new controller: if it becomes primary every controller is told, otherwise only
  the newcomer (ALREADY_EXISTS, "Is backup").
* A controller changing its election id: everyone is told if the primary changed,
  otherwise only that controller.
* The primary leaving: the remaining controllers are told who is primary now.
* An election id already held by another controller: INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dysco.softswitch.server._errors import P4RuntimeError

_log = logging.getLogger("dysco.softswitch.server.arbitration")

MAX_CONTROLLERS = 16


@dataclass(frozen=True, slots=True)
class Notice:
    """An arbitration reply for one stream: ``election_id`` is the primary's."""

    stream_id: int
    device_id: int
    election_id: int
    is_primary: bool


class Arbiter:
    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._elections: dict[int, int] = {}
        """stream id -> election id"""

    def primary(self) -> int | None:
        """The stream id of the primary, if any controller is connected."""
        if not self._elections:
            return None
        return max(self._elections, key=lambda s: self._elections[s])

    def primary_election_id(self) -> int | None:
        p = self.primary()
        return None if p is None else self._elections[p]

    def has_controllers(self) -> bool:
        return bool(self._elections)

    def is_connected(self, stream_id: int) -> bool:
        return stream_id in self._elections

    def may_write(self, election_id: int | None) -> bool:
        """PI's rule for Write and SetForwardingPipelineConfig.

        With no controller connected only requests without an election id pass;
        otherwise the election id must be the primary's.
        """
        if not self._elections:
            return election_id is None
        return election_id is not None and election_id == self.primary_election_id()

    def update(self, stream_id: int, device_id: int, election_id: int) -> list[Notice]:
        """A MasterArbitrationUpdate arrived on a stream."""
        if device_id != self.device_id:
            if stream_id in self._elections:
                raise P4RuntimeError("FAILED_PRECONDITION", "Invalid device id")
            raise P4RuntimeError("NOT_FOUND", f"Unknown device id {device_id}")
        for other, eid in self._elections.items():
            if other != stream_id and eid == election_id:
                raise P4RuntimeError("INVALID_ARGUMENT", "Election id already exists")
        before = self.primary()
        if stream_id not in self._elections:
            if len(self._elections) >= MAX_CONTROLLERS:
                raise P4RuntimeError("RESOURCE_EXHAUSTED", "Too many connections")
            self._elections[stream_id] = election_id
            _log.info("[arbitration] stream %d joins with election id %d", stream_id, election_id)
        elif self._elections[stream_id] != election_id:
            self._elections[stream_id] = election_id
            _log.info("[arbitration] stream %d now has election id %d", stream_id, election_id)
        after = self.primary()
        if after != before:
            _log.info("[arbitration] primary: %s -> %s", before, after)
            return self._notify_all()
        return [self._notice(stream_id)]

    def remove(self, stream_id: int) -> list[Notice]:
        """A stream closed."""
        if stream_id not in self._elections:
            return []
        before = self.primary()
        del self._elections[stream_id]
        _log.info("[arbitration] stream %d left", stream_id)
        after = self.primary()
        if before == stream_id and after is not None:
            _log.info("[arbitration] primary: %s -> %s", before, after)
            return self._notify_all()
        return []

    def _notify_all(self) -> list[Notice]:
        return [self._notice(s) for s in sorted(self._elections)]

    def _notice(self, stream_id: int) -> Notice:
        primary = self.primary()
        assert primary is not None
        return Notice(stream_id, self.device_id, self._elections[primary], stream_id == primary)
