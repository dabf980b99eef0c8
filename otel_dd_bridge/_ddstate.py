"""The W3C ``tracestate`` ``dd=`` list member, as Datadog's tracers read and write it.

Format (wire.md §6.2): ``dd=s:<priority>;o:<origin>;p:<16 hex parent id>;t.<tag>:<value>...``
where each ``t.<x>`` is the propagated tag ``_dd.p.<x>``. In values ``,``, ``;``, ``~`` and
characters outside 0x20-0x7E become ``_`` and ``=`` becomes ``~`` (decoded back to ``=``).
The member is capped at 256 characters by dropping ``t.*`` entries.

This is how Datadog sampling and origin travel with the OTel span context: the propagator
stores what it extracted in the ``dd`` member, the SDK copies the trace state onto every child
span, and translation reads it back for the chunk's priority, origin and decision maker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DDState", "format_dd_member", "parse_dd_member"]

_MAX_MEMBER = 256


@dataclass(slots=True)
class DDState:
    priority: int | None = None
    origin: str = ""
    parent_id: str = ""  # 16 hex chars of the last Datadog span id
    tags: dict[str, str] = field(default_factory=dict)  # full keys: "_dd.p.dm" -> "-4"


def _enc_value(v: str) -> str:
    out = []
    for c in v:
        if c in ",;~" or not (" " <= c <= "~"):
            out.append("_")
        elif c == "=":
            out.append("~")
        else:
            out.append(c)
    return "".join(out)


def _enc_key(k: str) -> str:
    return "".join("_" if c in ", =" or not ("!" <= c <= "~") else c for c in k)


def parse_dd_member(value: str) -> DDState:
    """Parse the value of a ``dd`` tracestate member (without ``dd=``); never raises."""
    st = DDState()
    for part in value.split(";"):
        key, sep, val = part.partition(":")
        if not sep:
            continue
        if key == "s":
            try:
                st.priority = int(val)
            except ValueError:
                pass
        elif key == "o":
            st.origin = val.replace("~", "=")
        elif key == "p":
            st.parent_id = val
        elif key.startswith("t.") and len(key) > 2:
            st.tags["_dd.p." + key[2:]] = val.replace("~", "=")
    return st


def format_dd_member(st: DDState) -> str:
    """Format a ``dd`` member value (without ``dd=``), at most 256 characters."""
    parts = []
    if st.priority is not None:
        parts.append(f"s:{st.priority}")
    if st.origin:
        parts.append("o:" + _enc_value(st.origin))
    if st.parent_id:
        parts.append("p:" + st.parent_id)
    base = ";".join(parts)
    for k, v in st.tags.items():
        if not k.startswith("_dd.p.") or k == "_dd.p.tid":
            continue  # the high trace-id bits travel in traceparent already
        item = f"t.{_enc_key(k[6:])}:{_enc_value(v)}"
        candidate = f"{base};{item}" if base else item
        if len(candidate) + 3 > _MAX_MEMBER:  # "dd=" prefix counts
            continue
        base = candidate
    return base
