"""What ``dysco demo`` tells, whichever world it ran in (the namespace testbed or the simulation):
the sessions' outcomes, the splices, the byte counts over time, the proxy's work; and from them
the live progress lines, the summary and the two PNGs.  Pure: the runners fill a :class:`Story`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN_S = 0.5
"""Goodput is drawn per interval of this many seconds."""
FIRST_SPLICE = 0.2
LAST_SPLICE = 0.5
"""Session i of n is spliced once this fraction of its upload arrived, evenly from the first
to the last: the reconfigurations come in a staggered wave, mid-transfer."""
MB = 1 << 20
AFTER_S = 3.0
"""On the testbed the sessions go on this long after the last splice's answer, then end."""
MIN_WINDOW_S = 0.1
"""A goodput over less time than this is not reported."""

Say = Callable[[str], None]


def splice_points(n: int, size: int) -> list[int]:
    """For each of ``n`` sessions of ``size`` bytes, the bytes after which it is spliced."""
    if n == 1:
        return [int(size * FIRST_SPLICE)]
    step = (LAST_SPLICE - FIRST_SPLICE) / (n - 1)
    return [int(size * (FIRST_SPLICE + i * step)) for i in range(n)]


@dataclass(frozen=True, slots=True)
class Transfer:
    """One session's outcome: what each end sent and received, by SHA-256."""

    n: int
    up_sent: str
    up_got: str
    down_sent: str
    down_got: str
    up: int
    """Bytes the server received."""
    down: int
    finished: float
    """Seconds from the start until both directions were complete."""

    @property
    def verified(self) -> bool:
        return self.up_sent == self.up_got and self.down_sent == self.down_got


@dataclass(frozen=True, slots=True)
class Splice:
    session: int
    requested: float
    """Seconds from the start at which the splice was asked for."""
    done: float | None
    """When the answer came (None: no answer)."""
    outcome: str
    seconds: float | None
    """The reconfiguration time as the world measures it (see :attr:`Story.measured`)."""
    wall: float | None = None
    """The whole request as its caller saw it (``dysco ctl splice``'s run time), if different."""

    @property
    def ok(self) -> bool:
        return self.outcome == "spliced"


@dataclass(frozen=True, slots=True)
class ProxyUse:
    """The proxy's work over a span of time."""

    relayed: int
    cpu_s: float | None
    """None where CPU time is not modelled (the simulation)."""
    span_s: float


@dataclass
class Story:
    world: str
    """One line: where the story ran."""
    short: str
    """One word for the plots' titles: testbed or simulation."""
    measured: str
    """What the reconfiguration time is."""
    sessions: int
    size_up: int
    size_down: int
    """Bytes each session sends each way (0: as long as the story needs, on the testbed)."""
    transfers: list[Transfer] = field(default_factory=list)
    splices: list[Splice] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds, bytes the server received so far, bytes the clients received so far), in order."""
    proxy_before: ProxyUse | None = None
    proxy_after: ProxyUse | None = None
    wall_s: float = 0.0

    # ---- derived numbers -----------------------------------------------------------------------

    @property
    def verified(self) -> int:
        return sum(
            t.verified and t.up > 0 and t.down > 0 and (t.up, t.down) == (self.size_up, self.size_down)
            if self.size_up
            else t.verified and t.up > 0 and t.down > 0
            for t in self.transfers
        )

    @property
    def spliced(self) -> list[Splice]:
        return [s for s in self.splices if s.ok]

    @property
    def reconfig_times(self) -> list[float]:
        return [s.seconds for s in self.spliced if s.seconds is not None]

    def bytes_at(self, t: float) -> int:
        """Both directions' bytes delivered by time ``t``, interpolated between samples."""
        prev = (0.0, 0)
        for s, up, down in self.samples:
            if s >= t:
                if s == prev[0]:
                    return up + down
                return int(prev[1] + (up + down - prev[1]) * (t - prev[0]) / (s - prev[0]))
            prev = (s, up + down)
        return prev[1]

    def rate(self, t0: float, t1: float) -> float | None:
        """Goodput in Mbit/s over [t0, t1], both directions together."""
        if t1 - t0 < MIN_WINDOW_S:
            return None
        return (self.bytes_at(t1) - self.bytes_at(t0)) * 8 / (t1 - t0) / 1e6

    def windows(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """Before: from the start to the first splice request (every session through the proxy).
        After: from the last splice's end to the first session's end (every session spliced and
        still sending), or to the last session's end if that leaves too little."""
        if not self.spliced or not self.transfers:
            return None, None
        before = (0.0, min(s.requested for s in self.splices))
        start = max(s.done or s.requested for s in self.splices)
        ends = sorted(t.finished for t in self.transfers)
        end = ends[0] if ends[0] - start >= 2 * BIN_S else ends[-1]
        return before, ((start, end) if end - start >= MIN_WINDOW_S else None)

    def goodput(self) -> dict[str, list[tuple[float, float]]]:
        """Mbit/s per BIN_S interval, per direction, at the intervals' ends."""
        out: dict[str, list[tuple[float, float]]] = {
            "both directions": [],
            "client -> server": [],
            "server -> client": [],
        }
        if not self.samples:
            return out
        end = self.samples[-1][0]
        t, last = BIN_S, (0, 0)
        while t <= end + BIN_S / 2:
            now = self._split_at(min(t, end))
            span = min(t, end) - (t - BIN_S)
            if span > 0:
                out["both directions"].append((t, (sum(now) - sum(last)) * 8 / span / 1e6))
                out["client -> server"].append((t, (now[0] - last[0]) * 8 / span / 1e6))
                out["server -> client"].append((t, (now[1] - last[1]) * 8 / span / 1e6))
            last, t = now, t + BIN_S
        return out

    def _split_at(self, t: float) -> tuple[int, int]:
        up = down = 0
        for s, u, d in self.samples:
            if s > t:
                break
            up, down = u, d
        return up, down

    # ---- text ----------------------------------------------------------------------------------

    def summary(self, out: Path | None = None) -> str:
        n = self.sessions
        lines = [f"summary ({self.world})"]
        lines.append(
            _row(
                "sessions",
                f"{len(self.transfers)} of {n} complete, {self.verified} of {n} verified "
                "(SHA-256 of every byte, both directions, at both ends)",
            )
        )
        up, down = sum(t.up for t in self.transfers), sum(t.down for t in self.transfers)
        lines.append(_row("bytes", f"client -> server {_size(up)}, server -> client {_size(down)}"))
        times = self.reconfig_times
        lines.append(_row("spliced", f"{len(self.spliced)} of {n} sessions (the proxy is out of their path)"))
        if times:
            ms = sorted(t * 1000 for t in times)
            lines.append(
                _row(
                    "reconfiguration",
                    f"min {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms",
                )
            )
        else:
            lines.append(_row("reconfiguration", "none completed"))
        lines.append(_row("", self.measured))
        before, after = self.windows()
        for label, w in (("goodput before", before), ("goodput after", after)):
            r = self.rate(*w) if w else None
            text = f"{r:.1f} Mbit/s ({w[0]:.1f}-{w[1]:.1f} s)" if w and r is not None else "n/a"
            what = "all through the proxy" if label.endswith("before") else "all spliced"
            lines.append(_row(label, f"{text}, {what}, both directions"))
        for label, use in (("proxy before", self.proxy_before), ("proxy after", self.proxy_after)):
            what = "until the first splice" if label.endswith("before") else "after the last splice"
            if use is None:
                lines.append(_row(label, "n/a"))
                continue
            cpu = f"{use.cpu_s:.2f} s CPU" if use.cpu_s is not None else "CPU not modelled"
            lines.append(_row(label, f"relayed {_size(use.relayed)}, {cpu} in {use.span_s:.1f} s {what}"))
        if out is not None:
            lines.append(_row("plots", f"{out / 'goodput.png'}, {out / 'reconfig_cdf.png'}"))
        lines.append("")
        lines.append("session  up         down       verified  splice at  reconfiguration")
        splices = {s.session: s for s in self.splices}
        for t in sorted(self.transfers, key=lambda t: t.n):
            s = splices.get(t.n)
            at = f"{s.requested:.2f} s" if s else "-"
            took = (f"{s.seconds * 1000:.0f} ms" if s.seconds is not None else "-") if s and s.ok else "-"
            if s and not s.ok:
                took = s.outcome
            lines.append(
                f"{t.n:<8} {_size(t.up):<10} {_size(t.down):<10} {'yes' if t.verified else 'NO':<9} "
                f"{at:<10} {took}"
            )
        return "\n".join(lines) + "\n"

    @property
    def ok(self) -> bool:
        return self.verified == self.sessions and len(self.spliced) == self.sessions

    # ---- pictures ------------------------------------------------------------------------------

    def draw(self, out: Path) -> tuple[Path, Path]:
        from dysco.plots import cdf_png, timeseries_png

        marks = [(s.requested, "splice requested") for s in sorted(self.splices, key=lambda s: s.requested)]
        g = timeseries_png(
            out / "goodput.png",
            self.goodput(),
            title=f"goodput of {self.sessions} sessions as the proxy is spliced out ({self.short})",
            ylabel="Mbit/s",
            marks=marks,
        )
        series: dict[str, Sequence[float]] = {
            "splice request to old path gone": [t * 1000 for t in self.reconfig_times]
        }
        walls = [s.wall * 1000 for s in self.spliced if s.wall is not None]
        if walls:
            series["dysco ctl splice, start to answer"] = walls
        if not any(series.values()):
            series = {"no splice completed": [0.0]}
        c = cdf_png(
            out / "reconfig_cdf.png",
            series,
            title=f"reconfiguration time: splicing the proxy out ({self.short})",
            xlabel="ms",
        )
        return g, c


def _row(label: str, text: str) -> str:
    return f"  {label:<16} {text}"


def _size(n: int) -> str:
    if n >= MB:
        return f"{n / MB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} B"


def progress_line(story: Story, t: float) -> str:
    """The once-a-second line: goodput over the last second, bytes so far, which are spliced."""
    up, down = story._split_at(t)
    rate = story.rate(max(0.0, t - 1.0), t)
    spliced = sorted(s.session for s in story.spliced if s.done is not None and s.done <= t)
    total_up, total_down = story.size_up * story.sessions, story.size_down * story.sessions
    of_up, of_down = (f"/{total_up / MB:.1f}", f"/{total_down / MB:.1f}") if story.size_up else ("", "")
    which = f" ({', '.join(map(str, spliced))})" if spliced else ""
    return (
        f"{t:6.2f} s  goodput {rate or 0.0:6.1f} Mbit/s  up {up / MB:5.1f}{of_up} MB  "
        f"down {down / MB:5.1f}{of_down} MB  spliced {len(spliced)}/{story.sessions}{which}"
    )
