"""The policy language's lexer, driven by the LALR parser (:mod:`dysco.compiler.lalr`).

It does what lark's contextual lexer does for this grammar, with one regular
expression for every token shape instead of one per terminal: a word is a
keyword where the parser state accepts that keyword, otherwise a name (so
``policy host: ...`` still works).  pcap-filter keywords outside the subset
raise :class:`Unsupported` wherever the grammar accepts them.

Tokens are plain tuples ``(type, text, start, line, column)`` (:data:`Tok`): the
parser makes one per word of every policy, and a tuple is the cheapest object
Python builds.  Positions are relative to the text lexed; line and column count from 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence, Set

Tok = tuple[str, str, int, int, int]
"""A token: terminal name, text, offset of its first character, line, column."""

# Alternatives that can start with the same character keep their order (DIR before word;
# the longest address form first); the others come most frequent first.
_TOKEN = re.compile(
    r"""
    [ \t\r\f\v]*                         # blanks before a token are part of its match
    (?: (?P<DIR>(?:src|dst)(?:[ \t]+(?:or|and|\|\||&&)[ \t]+(?:src|dst))?)(?![A-Za-z0-9_.-])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
    | (?P<ADDR_MASK>[0-9]+(?:\.[0-9]+){1,3}[ \t]+mask[ \t]+[0-9]+(?:\.[0-9]+){1,3})
    | (?P<PREFIX>[0-9]+(?:\.[0-9]+){1,3}[ \t]*/[ \t]*[0-9]+)
    | (?P<ADDR>[0-9]+(?:\.[0-9]+){1,3})
    | (?P<PORTRANGE>[0-9]+-[0-9]+)
    | (?P<NUMBER>0[xX][0-9a-fA-F]+|[0-9]+)
    | (?P<punct>->|&&|\|\||[{}();:,!])
    | (?P<ESCAPED>\\[A-Za-z]+)
    | (?P<nl>\n)
    | (?P<skip>\#[^\n]*)
    | (?P<end>\Z) )
    """,
    re.VERBOSE,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# What each group of _TOKEN is, by number (None: skip it)
_GROUP_KIND: tuple[str | None, ...] = tuple(
    None if name in (None, "skip", "end") else name
    for name in [None, *sorted(_TOKEN.groupindex, key=_TOKEN.groupindex.__getitem__)]
)

_KEYWORDS = {
    "and": "AND",
    "or": "OR",
    "not": "NOT",
    "proto": "PROTO",
    "tcp": "PQUAL",
    "ip": "PQUAL",
    "host": "AQUAL",
    "net": "AQUAL",
    "port": "AQUAL",
    "portrange": "AQUAL",
}
_OPERATORS = {"&&": "AND", "||": "OR", "!": "NOT", "->": "_ARROW"}

# Why pcap-filter keywords outside the subset are refused.
UNSUPPORTED = {
    **dict.fromkeys(
        ("udp", "icmp", "icmp6", "igmp", "igrp", "pim", "vrrp", "carp", "sctp"),
        "can never match: the classifier only sees outbound TCP SYNs",
    ),
    **dict.fromkeys(
        (
            "ip6",
            "arp",
            "rarp",
            "atalk",
            "aarp",
            "decnet",
            "lat",
            "sca",
            "moprc",
            "mopdl",
            "iso",
            "esis",
            "isis",
            "clnp",
            "stp",
            "ipx",
            "netbeui",
            "llc",
        ),
        "is not supported: Dysco classifies IPv4 TCP SYNs only",
    ),
    **dict.fromkeys(
        (
            "ether",
            "fddi",
            "tr",
            "wlan",
            "ppp",
            "slip",
            "link",
            "vlan",
            "mpls",
            "pppoed",
            "pppoes",
            "geneve",
            "type",
            "subtype",
            "dir",
            "ra",
            "ta",
            "addr1",
            "addr2",
            "addr3",
            "addr4",
        ),
        "is not supported: the classifier matches IPv4 addresses and TCP ports only, not link-layer fields",
    ),
    **dict.fromkeys(
        ("less", "greater", "len"),
        "cannot apply to an outbound TCP SYN: the classifier matches addresses and ports, not lengths",
    ),
    **dict.fromkeys(
        ("broadcast", "multicast"),
        "can never match: a TCP SYN is unicast",
    ),
    "gateway": "is not supported: it needs host-name and link-layer lookups",
    **dict.fromkeys(
        (
            "inbound",
            "outbound",
            "ifname",
            "on",
            "rnr",
            "rulenum",
            "reason",
            "rset",
            "srnr",
            "subrulenum",
            "action",
        ),
        "is not supported: it refers to capture metadata, which a classified SYN does not have",
    ),
    "protochain": "is not supported: Dysco classifies plain IPv4 TCP SYNs",
}


class Unsupported(Exception):
    """A pcap-filter keyword the subset refuses, where the grammar would take it."""

    def __init__(self, token: Tok) -> None:
        super().__init__(token[1])
        self.token = token


class UnexpectedCharacter(Exception):
    """No token starts at ``pos`` (line ``line``, column ``column``)."""

    def __init__(self, pos: int, line: int, column: int) -> None:
        super().__init__(f"no token at {line}:{column}")
        self.pos = pos
        self.line = line
        self.column = column
        self.accepts: set[str] = set()
        """The terminals the parser could take there (the parser fills them in)."""


class Lexer:
    """The lexer for one grammar: its literal terminals and what each parser state accepts.

    ``choices[state]`` is every symbol the state has an action or a goto for (what lark's
    contextual lexer looks at); ``literals`` maps the text of a literal terminal (``policy``,
    ``{``, ...) to its name.
    """

    def __init__(self, choices: Sequence[Set[str]], literals: Mapping[str, str]) -> None:
        self._choices = choices
        self._literals = dict(literals)
        self._special = frozenset(_KEYWORDS) | frozenset(UNSUPPORTED) | frozenset(literals)
        # (keyword, parser state) -> terminal; bounded by keywords x states
        self._keyword_in_state: dict[tuple[str, int], str] = {}

    def tokens(self, text: str, stack: list[int]) -> Iterator[Tok]:
        """The tokens of ``text``; ``stack`` is the parser's state stack, read as it changes."""
        choices = self._choices
        literals = self._literals
        special = self._special
        keyword_in_state = self._keyword_in_state
        match = _TOKEN.match
        kinds = _GROUP_KIND
        pos, end = 0, len(text)
        line, line_start = 1, 0
        while pos < end:
            m = match(text, pos)
            if m is None:
                while text[pos] in " \t\r\f\v":
                    pos += 1
                raise UnexpectedCharacter(pos, line, pos - line_start + 1)
            group = m.lastindex
            pos = m.end()
            kind = kinds[group]  # type: ignore[index]
            if kind is None:  # a comment, the end
                continue
            if kind == "nl":
                line, line_start = line + 1, pos
                continue
            value = m.group(group)  # type: ignore[arg-type]
            start = pos - len(value)  # every token ends its match
            if kind == "DIR" and " " not in value and "DIR" not in choices[stack[-1]]:
                kind = "word"  # 'src' or 'dst' used as a name
            if kind == "word":
                if value in special:
                    state = stack[-1]
                    known = keyword_in_state.get((value, state))
                    if known is None:
                        known = keyword_in_state[value, state] = self._classify(value, choices[state])
                    kind = known
                    if kind == "UNSUPPORTED":
                        raise Unsupported((kind, value, start, line, start - line_start + 1))
                elif "." in value:  # not a NAME
                    kind = "WORD"
                else:  # what _classify would say, without a call: a NAME unless only WORD fits
                    accepts = choices[stack[-1]]
                    kind = "WORD" if "NAME" not in accepts and "WORD" in accepts else "NAME"
            elif kind == "punct":
                kind = _OPERATORS.get(value) or literals[value]
            yield kind, value, start, line, start - line_start + 1

    def _classify(self, word: str, accepts: Set[str]) -> str:
        candidates = []
        keyword = _KEYWORDS.get(word) or self._literals.get(word)
        if keyword:
            candidates.append(keyword)
        if word in UNSUPPORTED:
            candidates.append("UNSUPPORTED")
        if _NAME.match(word):
            candidates.append("NAME")
        candidates.append("WORD")
        for c in candidates:
            if c in accepts:
                return c
        return candidates[0]  # not acceptable here: the parser reports it
