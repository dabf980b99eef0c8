"""Datadog's normalization and truncation rules, applied to every span we emit.

Restated from the Agent (``pkg/trace/traceutil/normalize/normalize.go``, ``agent/normalizer.go``,
``agent/truncator.go``; translation.md §5.5). In agentless mode no Agent runs between us and
the intake, so the exporter emits already-normalized spans in every mode.

All length limits are in UTF-8 **bytes** and cut on a character boundary.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "DEFAULT_SERVICE",
    "DEFAULT_SPAN_NAME",
    "MAX_META_KEY_LEN",
    "MAX_META_VALUE_LEN",
    "MAX_NAME_LEN",
    "MAX_RESOURCE_LEN",
    "MAX_SERVICE_LEN",
    "MAX_TYPE_LEN",
    "normalize_name",
    "normalize_service",
    "normalize_tag",
    "normalize_tag_value",
    "safe_str",
    "truncate_meta_key",
    "truncate_meta_value",
    "truncate_utf8",
]

MAX_NAME_LEN = 100
MAX_SERVICE_LEN = 100
MAX_TYPE_LEN = 100
MAX_RESOURCE_LEN = 5000
MAX_META_KEY_LEN = 200
MAX_META_VALUE_LEN = 25000
MAX_TAG_LEN = 200
DEFAULT_SPAN_NAME = "unnamed_operation"
DEFAULT_SERVICE = "unnamed-service"


def safe_str(s: str) -> str:
    """Return ``s`` if it encodes as UTF-8, else a copy with lone surrogates replaced (U+FFFD)."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def truncate_utf8(s: str, limit: int) -> str:
    """Cut ``s`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    if len(s) * 4 <= limit:  # cheap exit: cannot exceed the limit
        return s
    b = s.encode("utf-8", "surrogatepass")
    if len(b) <= limit:
        return s
    return b[:limit].decode("utf-8", "ignore")


def truncate_meta_key(k: str) -> str:
    """Keys over 200 bytes are cut to 200 bytes and suffixed with ``...`` (Agent truncator)."""
    if len(k) * 4 <= MAX_META_KEY_LEN:
        return k
    t = truncate_utf8(k, MAX_META_KEY_LEN)
    return k if t == k else t + "..."


def truncate_meta_value(v: str) -> str:
    """Values over 25000 bytes are cut to 25000 bytes and suffixed with ``...``."""
    if len(v) * 4 <= MAX_META_VALUE_LEN:
        return v
    t = truncate_utf8(v, MAX_META_VALUE_LEN)
    return v if t == v else t + "..."


def _is_ascii_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_ascii_alnum(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")


def normalize_name(name: str) -> str:
    """The Agent's ``NormalizeName`` for operation names.

    Empty -> ``unnamed_operation``; cut to 100 bytes; leading non-letters dropped; only
    ``[A-Za-z0-9_.]`` kept (case kept); any other run becomes one ``_``; ``_`` before ``.``
    becomes ``.``; no ``_`` right after ``.``; a trailing ``_`` is dropped.
    """
    if not name:
        return DEFAULT_SPAN_NAME
    name = truncate_utf8(name, MAX_NAME_LEN)
    i, n = 0, len(name)
    while i < n and not _is_ascii_alpha(name[i]):
        i += 1
    if i == n:
        return DEFAULT_SPAN_NAME
    out = [name[i]]
    for c in name[i + 1 :]:
        if _is_ascii_alnum(c):
            out.append(c)
        elif c == ".":
            if out[-1] == "_":
                out[-1] = "."
            else:
                out.append(".")
        elif out[-1] not in "._":
            out.append("_")
    if out[-1] == "_":
        out.pop()
    return "".join(out)


def _normalize(v: str, strip_leading_non_letters: bool) -> str:
    # Unicode-aware: letters and digits kept (lowercased), ':' '.' '/' '-' kept, every other run
    # of characters becomes one '_', a trailing run is removed. Max 200 characters.
    out: list[str] = []
    in_cut = False
    chars = 0
    for c in v:
        if chars >= MAX_TAG_LEN:
            break
        if c.isupper():
            c = c.lower()
        cat = unicodedata.category(c)
        if cat[0] == "L":
            ok = True
        elif strip_leading_non_letters and not out:
            continue
        elif cat == "Nd" or c in ":./-":
            ok = True
        else:
            ok = False
        chars += 1
        if ok:
            if in_cut:
                out.append("_")
                in_cut = False
            out.append(c)
        else:
            in_cut = True
    return "".join(out)


def normalize_tag_value(v: str) -> str:
    """The Agent's ``NormalizeTagValue`` (``"  ENV "`` -> ``"_env"``)."""
    if v.isascii() and v.islower() and v.replace("_", "a").replace(":", "a").replace(
        ".", "a"
    ).replace("/", "a").replace("-", "a").isalnum() and "__" not in v and not v.endswith("_"):
        return v[:MAX_TAG_LEN]
    return _normalize(v, False)


def normalize_tag(v: str) -> str:
    """The Agent's ``NormalizeTag``: as :func:`normalize_tag_value`, leading non-letters dropped."""
    return _normalize(v, True)


def normalize_service(svc: str) -> str:
    """The Agent's ``NormalizeService``: 100 bytes, NormalizeTagValue, empty -> fallback."""
    s = normalize_tag_value(truncate_utf8(svc, MAX_SERVICE_LEN))
    return s or DEFAULT_SERVICE
