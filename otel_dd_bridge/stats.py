"""Client-side APM stats: a thread-safe concentrator of Datadog spans into 10 s buckets.

What the Agent (or libdatadog's concentrator, the one Datadog's tracers and the serverless
mini-agent run) computes from spans, computed here so that the service pages (hits, errors,
latency percentiles) stay right when nothing downstream computes them (agentless mode), or when
spans are sampled before they reach the Agent. Behaviour follows libdatadog
``libdd-trace-stats`` (wire.md §4):

* **Eligible spans**: top-level (metric ``_top_level`` or ``_dd.top_level`` == 1) OR measured
  (``_dd.measured`` == 1) OR ``span.kind`` in ``server, client, producer, consumer``
  (case-insensitive; in agent mode the Agent's ``/info`` ``span_kinds_stats_computed`` list when
  it gives one), AND NOT a partial snapshot (metric ``_dd.partial_version`` >= 0).
* **Buckets** of :data:`BUCKET_NS` (10 s) by span **end** time (``start + duration``, aligned
  down). A span older than the oldest bucket still open is counted in that oldest bucket (as
  libdatadog and the Agent do for late spans). A span ending after "now" (a wrong clock or
  hand-made timestamps) is counted in the current bucket, so the number of open buckets stays
  bounded (libdatadog would open a future bucket: a deliberate difference).
* **Aggregation key**: service, name, resource, type, HTTP status code (metric
  ``http.status_code``, else the meta value parsed as an integer), ``span.kind``, synthetics
  (``_dd.origin`` starts with ``synthetics``), trace root (``parent_id == 0``), peer tags, gRPC
  status code (``rpc.grpc.status_code``, ``grpc.code``, ``rpc.grpc.status.code``,
  ``grpc.status.code``: meta names or numbers first, then metrics), HTTP method
  (``http.method``), HTTP endpoint (``http.endpoint``, else ``http.route``), service source
  (``_dd.svc_src``); plus the payload dimensions env, version, hostname and container id.
* **Peer tags**: for ``client``/``producer``/``consumer`` spans, ``key:value`` for every meta key
  in the peer-tag list (:data:`DEFAULT_PEER_TAG_KEYS`, the Agent's default set: the sorted
  precursor tags of its ``peer_tags.ini`` plus ``_dd.base_service``; the Agent's ``/info``
  ``peer_tags`` list replaces it in agent mode), in list order, IP addresses quantized to
  ``blocked-ip-address`` (except loopback and cloud metadata addresses); for other spans
  ``_dd.base_service:<v>`` when that tag is set.
* **Per group**: hits, errors, top-level hits, total duration (ns), and two
  :class:`~otel_dd_bridge.ddsketch.DDSketch` latency distributions (ok / error).
* **Cardinality bounds**, per bucket, libdatadog's defaults (:class:`StatsLimits`): at most
  7 000 groups; beyond that a new group's spans go into one overflow group whose every string
  field is ``tracer_blocked_value``. At most 1 024 distinct resources, 512 distinct HTTP
  endpoints and 512 distinct peer-tag sets: beyond each, the new value is replaced by
  ``tracer_blocked_value`` (the span still counts). Collapsed spans are counted
  (:meth:`SpanConcentrator.counters`).

Memory is therefore bounded by (open buckets, normally ≤ 3) × (``max_groups`` + 1) groups; a
group costs ~0.5 KB plus its sketches' bins (a dict entry per distinct latency bin, ≤ 2 048
per sketch, ~1-3 KB for a realistic latency spread).

Thread-safe: one lock around aggregation and flush (``SimpleSpanProcessor`` calls ``export()``
from any thread; the writer thread flushes). After ``fork()`` the child starts empty (the
parent's numbers are the parent's to send) with a fresh lock.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from otel_dd_bridge import _lifecycle
from otel_dd_bridge.ddsketch import DDSketch, encode_empty
from otel_dd_bridge.model import TraceChunk

__all__ = [
    "BUCKET_NS",
    "DEFAULT_PEER_TAG_KEYS",
    "ELIGIBLE_SPAN_KINDS",
    "TRACER_BLOCKED_VALUE",
    "ClientStatsPayload",
    "GroupedStats",
    "SpanConcentrator",
    "StatsBucket",
    "StatsLimits",
    "quantize_peer_ip_addresses",
    "stats_resource_obfuscator",
]

BUCKET_NS = 10_000_000_000
TRACER_BLOCKED_VALUE = "tracer_blocked_value"
ELIGIBLE_SPAN_KINDS: tuple[str, ...] = ("server", "client", "producer", "consumer")
_PEER_KINDS = frozenset(("client", "producer", "consumer"))
_BUFFER_LEN = 2  # buckets kept open behind "now" (current + previous), as libdatadog
_OBFUSCATED_TYPES = frozenset(("sql", "cassandra", "redis", "valkey"))
_CACHE_MAX = 1024  # entries of each memo cache (peer-tag keys, peer-tag values); then cleared

#: The Agent's default peer-tag keys (``pkg/trace/config/peer_tags.ini`` precursors plus
#: ``_dd.base_service``, sorted; the same set libdatadog's serverless mini-agent embeds).
DEFAULT_PEER_TAG_KEYS: tuple[str, ...] = (
    "_dd.base_service", "active_record.db.vendor", "amqp.destination", "amqp.exchange",
    "amqp.queue", "aws.queue.name", "aws.s3.bucket", "bucketname", "cassandra.keyspace",
    "db.cassandra.contact.points", "db.couchbase.seed.nodes", "db.hostname", "db.instance",
    "db.name", "db.namespace", "db.system", "db.type", "dns.hostname", "grpc.host", "hostname",
    "http.host", "http.server_name", "messaging.destination", "messaging.destination.name",
    "messaging.kafka.bootstrap.servers", "messaging.rabbitmq.exchange", "messaging.system",
    "mongodb.db", "msmq.queue.path", "net.peer.name", "network.destination.ip",
    "network.destination.name", "out.host", "peer.hostname", "peer.service", "queuename",
    "rpc.service", "rpc.system", "sequel.db.vendor", "server.address", "streamname",
    "tablename", "topicname",
)

_GRPC_KEYS = ("rpc.grpc.status_code", "grpc.code", "rpc.grpc.status.code", "grpc.status.code")
_GRPC_NAMES = {
    "OK": 0, "CANCELLED": 1, "CANCELED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3,
    "INVALIDARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "DEADLINEEXCEEDED": 4, "NOT_FOUND": 5,
    "NOTFOUND": 5, "ALREADY_EXISTS": 6, "ALREADYEXISTS": 6, "PERMISSION_DENIED": 7,
    "PERMISSIONDENIED": 7, "RESOURCE_EXHAUSTED": 8, "RESOURCEEXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "FAILEDPRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11,
    "OUTOFRANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15,
    "DATALOSS": 15, "UNAUTHENTICATED": 16,
}
_U32 = 0xFFFFFFFF


# --------------------------------------------------------------------------- output model


@dataclass(slots=True)
class GroupedStats:
    """One aggregation group of one bucket (``ClientGroupedStats``, wire.md §4.1)."""

    service: str
    name: str
    resource: str
    type: str
    http_status_code: int
    span_kind: str
    synthetics: bool
    is_trace_root: int  # Trilean: 0 NOT_SET, 1 TRUE, 2 FALSE
    peer_tags: tuple[str, ...]
    grpc_status_code: str
    http_method: str
    http_endpoint: str
    service_source: str
    hits: int
    errors: int
    duration: int
    top_level_hits: int
    ok_summary: bytes  # serialized DDSketch protobuf
    error_summary: bytes


@dataclass(slots=True)
class StatsBucket:
    """``ClientStatsBucket``: the groups of one time bucket."""

    start: int  # ns since the epoch, aligned to ``duration``
    duration: int  # ns
    stats: list[GroupedStats]


@dataclass(slots=True)
class ClientStatsPayload:
    """``ClientStatsPayload``: the buckets of one (env, version, hostname, container) tuple."""

    hostname: str
    env: str
    version: str
    stats: list[StatsBucket]
    lang: str = "python"
    tracer_version: str = ""
    runtime_id: str = ""
    sequence: int = 0
    service: str = ""
    container_id: str = ""
    tags: tuple[str, ...] = ()
    git_commit_sha: str = ""
    image_tag: str = ""
    process_tags: str = ""
    process_tags_hash: int = 0

    def group_count(self) -> int:
        return sum(len(b.stats) for b in self.stats)


@dataclass(frozen=True, slots=True)
class StatsLimits:
    """Per-bucket cardinality bounds (libdatadog's ``CardinalityLimitConfig`` defaults)."""

    max_groups: int = 7000
    max_resources: int = 1024
    max_http_endpoints: int = 512
    max_peer_tags: int = 512

    def __post_init__(self) -> None:
        for name in ("max_groups", "max_resources", "max_http_endpoints", "max_peer_tags"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


# --------------------------------------------------------------------------- IP quantization

_ALLOWED_IPS = frozenset(("127.0.0.1", "::1", "169.254.169.254", "fd00:ec2::254", "169.254.170.2"))
_PROTO_PREFIX = re.compile(r"^((?:dnspoll|ftp|file|http|https):/{2,3})")
_HEX_LETTERS = frozenset("abcdefABCDEF:")
_QCACHE_MAX = 4096
_qcache: dict[str, str] = {}


def _is_ipv6(s: str) -> bool:
    if "%" in s:  # zone ids are not IP addresses for this purpose (as libdatadog)
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _parse_ipv4(s: str, sep: str) -> tuple[str, str] | None:
    value = digits = field_no = 0
    end = len(s)
    for i, ch in enumerate(s):
        if "0" <= ch <= "9":
            if digits == 1 and value == 0:
                return None  # no leading zero
            value = value * 10 + (ord(ch) - 48)
            digits += 1
            if value > 255:
                return None
        elif ch == sep:
            if digits == 0:
                return None
            if field_no == 3:
                end = i
                break
            value = digits = 0
            field_no += 1
        else:
            end = i
            break
    if digits > 0 and field_no == 3:
        return s[:end], s[end:]
    return None


def _parse_ip(s: str) -> tuple[str, str] | None:
    for ch in s:
        if "0" <= ch <= "9":
            continue
        if ch in ".-_":
            return _parse_ipv4(s, ch)
        if ch in _HEX_LETTERS and _is_ipv6(s):
            return s, ""
        if ch == "[":
            host, sep, rest = s[1:].partition("]")
            if sep and _is_ipv6(host):
                return host, rest
            return None
        return None
    return None


def _quantize_ip(s: str) -> str | None:
    if s.startswith("ip-"):
        prefix, rest = "ip-", s[3:]
    else:
        m = _PROTO_PREFIX.match(s)
        prefix, rest = (m.group(1), s[m.end():]) if m else ("", s)
    parsed = _parse_ip(rest)
    if parsed is not None and parsed[0] not in _ALLOWED_IPS:
        return f"{prefix}blocked-ip-address{parsed[1]}"
    return None


def quantize_peer_ip_addresses(value: str) -> str:
    """Replace IP addresses in a (comma-separated) host list by ``blocked-ip-address``.

    libdatadog's ``quantize_peer_ip_addresses``: each entry that is an IPv4 (``.``, ``-`` or
    ``_`` separated) or IPv6 address, optionally after ``ip-`` or a URL scheme and before a
    suffix, is replaced; loopback and cloud metadata addresses are kept; duplicates after
    quantization are collapsed. Keeps peer-tag cardinality bounded.
    """
    cached = _qcache.get(value)
    if cached is not None:
        return cached
    changed = False
    out: list[str] = []
    for part in value.split(","):
        q = _quantize_ip(part)
        if q is not None:
            changed = True
            part = q
        if part in out:
            changed = True
        else:
            out.append(part)
    result = ",".join(out) if changed else value
    if len(_qcache) >= _QCACHE_MAX:
        _qcache.clear()
    _qcache[value] = result
    return result


# --------------------------------------------------------------------------- aggregation


def stats_resource_obfuscator() -> Callable[[str, str], str]:
    """What the Go Agent does to the resource of a client-computed stats group
    (``obfuscateStatsGroup``): SQL/Cassandra through the SQL obfuscator (a query it rejects
    becomes ``Non-parsable SQL query``), Redis/Valkey quantized to their command names.

    For agent mode, where spans reach the Agent unobfuscated but stats are grouped here: the
    groups then match the Agent's, and raw literals neither leave the process in stats nor
    eat the resource cardinality bound.
    """
    from otel_dd_bridge.obfuscate import (
        NON_PARSABLE_SQL,
        Obfuscator,
        SQLObfuscationError,
        quantize_redis,
    )

    obf = Obfuscator()  # its own caches; the concentrator also memoizes results

    def obfuscate(span_type: str, resource: str) -> str:
        if not resource:
            return resource
        if span_type in ("sql", "cassandra"):
            try:
                return obf.obfuscate_sql(resource)
            except SQLObfuscationError:
                return NON_PARSABLE_SQL
        return quantize_redis(resource)

    return obfuscate



def _grpc_code(meta: dict[str, str], metrics: dict[str, float | int]) -> str:
    for key in _GRPC_KEYS:
        v = meta.get(key)
        if v is None:
            continue
        if v.isdigit() and v.isascii():
            n = int(v)
            if n <= 255:
                return str(n)
            continue
        name = v[11:] if v.startswith("StatusCode.") else v
        code = _GRPC_NAMES.get(name.upper()) if name.isascii() else None
        if code is not None:
            return str(code)
    for key in _GRPC_KEYS:
        m = metrics.get(key)
        if m is None:
            continue
        try:
            f = float(m)
        except (TypeError, ValueError):
            continue
        if f == f and 0 <= f <= 255 and f == int(f):
            return str(int(f))
    return ""


def _http_status(meta: dict[str, str], metrics: dict[str, float | int]) -> int:
    m = metrics.get("http.status_code")
    if m is not None:
        try:
            f = float(m)
        except (TypeError, ValueError):
            return 0
        if f != f or f <= 0:  # Rust `as u32`: NaN and negatives saturate to 0
            return 0
        return min(int(f), _U32)
    v = meta.get("http.status_code")
    if v and v.isdigit() and v.isascii():
        n = int(v)
        return n if n <= _U32 else 0
    return 0


_Key = tuple[Any, ...]  # see the _K_* positions below


class _Group:
    __slots__ = ("duration", "err", "errors", "hits", "ok", "top_hits")

    def __init__(self) -> None:
        self.hits = 0
        self.errors = 0
        self.top_hits = 0
        self.duration = 0
        self.ok: DDSketch | None = None
        self.err: DDSketch | None = None


class _Bucket:
    __slots__ = ("endpoints", "groups", "peer_sets", "resources")

    def __init__(self) -> None:
        self.groups: dict[_Key, _Group] = {}
        self.resources: set[str] = set()
        self.endpoints: set[str] = set()
        self.peer_sets: set[tuple[str, ...]] = set()


# Positions in the group key tuple (kept a plain tuple: it is built for every span).
_K_PAYLOAD, _K_SERVICE, _K_NAME, _K_RESOURCE, _K_TYPE, _K_STATUS, _K_KIND = range(7)
_K_SYNTH, _K_ROOT, _K_PEER, _K_GRPC, _K_METHOD, _K_ENDPOINT, _K_SVC_SRC = range(7, 14)
_BLOCKED_PEER = (TRACER_BLOCKED_VALUE,)
_B = TRACER_BLOCKED_VALUE


class SpanConcentrator:
    """Aggregates eligible spans of translated chunks; :meth:`flush` hands out the buckets.

    Args:
        limits: cardinality bounds per bucket.
        peer_tag_keys: meta keys aggregated as peer tags (default: the Agent's defaults).
        span_kinds: span kinds eligible by themselves (default :data:`ELIGIBLE_SPAN_KINDS`).
        clock: wall clock in ns since the epoch (tests inject one).
        bucket_ns: bucket width (10 s; a parameter for tests only).
        resource_obfuscator: ``(span type, resource) -> resource`` applied to the resources of
            ``sql``/``cassandra``/``redis``/``valkey`` spans before grouping, for spans that
            were not obfuscated in-process (agent mode; see
            :func:`stats_resource_obfuscator`). Results are memoized.
    """

    def __init__(
        self,
        *,
        limits: StatsLimits | None = None,
        peer_tag_keys: Sequence[str] | None = None,
        span_kinds: Iterable[str] | None = None,
        clock: Callable[[], int] = time.time_ns,
        bucket_ns: int = BUCKET_NS,
        resource_obfuscator: Callable[[str, str], str] | None = None,
    ) -> None:
        self.limits = limits or StatsLimits()
        self._res_obf = resource_obfuscator
        self._res_cache: dict[tuple[str, str], str] = {}
        self._clock = clock
        self._bucket_ns = bucket_ns
        self.set_peer_tag_keys(DEFAULT_PEER_TAG_KEYS if peer_tag_keys is None else peer_tag_keys)
        self.set_span_kinds(ELIGIBLE_SPAN_KINDS if span_kinds is None else span_kinds)
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}
        now = clock()
        self._oldest = now - now % bucket_ns
        self._counters = {"spans": 0, "spans_ignored": 0, "collapsed_groups": 0,
                          "collapsed_fields": 0}
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._buckets = {}
        self._counters = dict.fromkeys(self._counters, 0)

    def set_peer_tag_keys(self, keys: Sequence[str]) -> None:
        """Replace the peer-tag keys (e.g. from the Agent's ``/info``); order is kept."""
        uniq = tuple(dict.fromkeys(k for k in keys if isinstance(k, str) and k))
        self.peer_tag_keys = uniq
        self._peer_rank = {k: i for i, k in enumerate(uniq)}
        self._peer_key_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._peer_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}

    def set_span_kinds(self, kinds: Iterable[str]) -> None:
        """Replace the span kinds eligible by themselves (compared lowercased)."""
        self.span_kinds = frozenset(k.lower() for k in kinds if isinstance(k, str))

    @property
    def bucket_ns(self) -> int:
        return self._bucket_ns

    def counters(self) -> dict[str, int]:
        """``spans`` aggregated, ``spans_ignored`` (not eligible), spans in the overflow group
        (``collapsed_groups``) and spans with a field replaced by ``tracer_blocked_value``
        (``collapsed_fields``)."""
        with self._lock:
            return dict(self._counters)

    def open_buckets(self) -> dict[int, int]:
        """``{bucket start: group count}`` of the buckets not flushed yet (for tests/tools)."""
        with self._lock:
            return {ts: len(b.groups) for ts, b in sorted(self._buckets.items())}

    # -- hot path ---------------------------------------------------------------------------

    def add_chunks(self, chunks: Sequence[TraceChunk]) -> None:
        """Aggregate the eligible spans of translated (and obfuscated) chunks. Never raises
        for well-formed :class:`~otel_dd_bridge.model.DDSpan` objects."""
        bucket_ns = self._bucket_ns
        now = self._clock()
        current = now - now % bucket_ns
        kinds = self.span_kinds
        key_cache = self._peer_key_cache
        peer_cache = self._peer_cache
        res_obf = self._res_obf
        added = ignored = 0
        with self._lock:
            oldest = self._oldest
            buckets = self._buckets
            for chunk in chunks:
                p = chunk.payload
                pkey = (p.env, p.app_version, p.hostname, p.container_id) if p else ("", "", "", "")
                chunk_origin = chunk.origin
                for s in chunk.spans:
                    meta = s.meta
                    metrics = s.metrics
                    mget = metrics.get
                    kind = meta.get("span.kind", "")
                    top = mget("_top_level") == 1 or mget("_dd.top_level") == 1
                    if not (top or mget("_dd.measured") == 1 or kind in kinds
                            or (kind and kind.lower() in kinds)):
                        ignored += 1
                        continue
                    pv = mget("_dd.partial_version")
                    if pv is not None and pv >= 0:
                        ignored += 1
                        continue
                    d = s.duration
                    end = s.start + d
                    ts = end - end % bucket_ns
                    if ts < oldest:
                        ts = oldest
                    elif ts > current:
                        ts = current
                    # peer tags
                    if kind in _PEER_KINDS or (kind and kind.lower() in _PEER_KINDS):
                        # Which meta keys are peer tags depends only on the key set: cached
                        # by the key tuple (C-speed to build), values looked up per span.
                        mkeys = tuple(meta)
                        found = key_cache.get(mkeys)
                        if found is None:
                            found = self._peer_keys_of(mkeys)
                        if found:
                            pvals = tuple([meta[k] for k in found])
                            peer = peer_cache.get((found, pvals))
                            if peer is None:
                                peer = self._peer_tags_of(found, pvals)
                        else:
                            peer = ()
                    else:
                        base = meta.get("_dd.base_service")
                        peer = () if base is None else (
                            f"_dd.base_service:{base}" if base else "_dd.base_service",)
                    status = mget("http.status_code")
                    if type(status) is not int or not 0 <= status <= _U32:
                        status = _http_status(meta, metrics)
                    if ("rpc.grpc.status_code" in meta or "grpc.code" in meta
                            or "rpc.grpc.status.code" in meta or "grpc.status.code" in meta
                            or "rpc.grpc.status_code" in metrics or "grpc.code" in metrics
                            or "rpc.grpc.status.code" in metrics
                            or "grpc.status.code" in metrics):
                        grpc = _grpc_code(meta, metrics)
                    else:
                        grpc = ""
                    endpoint = meta.get("http.endpoint")
                    if endpoint is None:
                        endpoint = meta.get("http.route", "")
                    origin = meta.get("_dd.origin", chunk_origin)
                    resource = s.resource
                    if res_obf is not None and s.type in _OBFUSCATED_TYPES:
                        resource = self._obfuscated_resource(s.type, resource)
                    key = (
                        pkey, s.service, s.name, resource, s.type, status, kind,
                        origin.startswith("synthetics"), 1 if s.parent_id == 0 else 2, peer,
                        grpc, meta.get("http.method", ""), endpoint, meta.get("_dd.svc_src", ""),
                    )
                    b = buckets.get(ts)
                    if b is None:
                        b = buckets[ts] = _Bucket()
                    g = b.groups.get(key)
                    if g is None:
                        g = self._new_group(b, key)
                    if d < 0:
                        d = 0
                    g.hits += 1
                    g.duration += d
                    if s.error:
                        g.errors += 1
                        sk = g.err
                        if sk is None:
                            sk = g.err = DDSketch()
                    else:
                        sk = g.ok
                        if sk is None:
                            sk = g.ok = DDSketch()
                    sk.add_ns(d)
                    if top:
                        g.top_hits += 1
                    added += 1
            c = self._counters
            c["spans"] += added
            c["spans_ignored"] += ignored

    def _obfuscated_resource(self, span_type: str, resource: str) -> str:
        cache = self._res_cache
        out = cache.get((span_type, resource))
        if out is None:
            assert self._res_obf is not None
            try:
                out = self._res_obf(span_type, resource)
            except Exception:  # noqa: BLE001 - never let a raw value through, never raise
                out = "Non-parsable SQL query" if span_type in ("sql", "cassandra") else "?"
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[(span_type, resource)] = out
        return out

    def _peer_keys_of(self, mkeys: tuple[str, ...]) -> tuple[str, ...]:
        rank = self._peer_rank
        found = tuple(sorted((k for k in mkeys if k in rank), key=rank.__getitem__))
        cache = self._peer_key_cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[mkeys] = found
        return found

    def _peer_tags_of(self, found: tuple[str, ...], vals: tuple[str, ...]) -> tuple[str, ...]:
        peer = tuple(
            f"{k}:{quantize_peer_ip_addresses(v)}" if v else k for k, v in zip(found, vals, strict=True)
        )
        cache = self._peer_cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[(found, vals)] = peer
        return peer

    def _new_group(self, b: _Bucket, key: _Key) -> _Group:
        """Admit a new key into a bucket under the cardinality bounds (lock held)."""
        lim = self.limits
        collapsed = False
        resource = key[_K_RESOURCE]
        if resource not in b.resources:
            if len(b.resources) >= lim.max_resources:
                resource, collapsed = _B, True
            else:
                b.resources.add(resource)
        endpoint = key[_K_ENDPOINT]
        if endpoint not in b.endpoints:
            if len(b.endpoints) >= lim.max_http_endpoints:
                endpoint, collapsed = _B, True
            else:
                b.endpoints.add(endpoint)
        peer = key[_K_PEER]
        if peer not in b.peer_sets:
            if len(b.peer_sets) >= lim.max_peer_tags:
                peer, collapsed = _BLOCKED_PEER, True
            else:
                b.peer_sets.add(peer)
        if collapsed:
            self._counters["collapsed_fields"] += 1
            lst = list(key)
            lst[_K_RESOURCE], lst[_K_ENDPOINT], lst[_K_PEER] = resource, endpoint, peer
            key = tuple(lst)
            g = b.groups.get(key)
            if g is not None:
                return g
        if len(b.groups) >= lim.max_groups:
            self._counters["collapsed_groups"] += 1
            okey = (key[_K_PAYLOAD], _B, _B, _B, _B, 0, _B, False, 0, _BLOCKED_PEER, "", _B, _B, _B)
            g = b.groups.get(okey)
            if g is None:
                g = b.groups[okey] = _Group()
            return g
        g = b.groups[key] = _Group()
        return g

    # -- flush ------------------------------------------------------------------------------

    def flush(self, *, force: bool = False) -> list[ClientStatsPayload]:
        """Take the closed buckets (all of them with ``force``) as payloads, one per
        (env, version, hostname, container id), each bucket's groups in insertion order.

        A bucket is closed once "now" is two bucket widths past its start (the current and the
        previous bucket stay open for late spans, as libdatadog). ``force`` (shutdown,
        ``force_flush``) takes the open ones too, so nothing is lost at exit.
        """
        bucket_ns = self._bucket_ns
        now = self._clock()
        current = now - now % bucket_ns
        with self._lock:
            if force:
                taken = self._buckets
                self._buckets = {}
                self._oldest = current
            else:
                limit = now - _BUFFER_LEN * bucket_ns
                taken = {ts: b for ts, b in self._buckets.items() if ts <= limit}
                for ts in taken:
                    del self._buckets[ts]
                self._oldest = max(self._oldest, current - (_BUFFER_LEN - 1) * bucket_ns)
        # Serialization happens outside the lock: the taken buckets are ours alone now.
        by_payload: dict[_Key, ClientStatsPayload] = {}
        for ts in sorted(taken):
            per_payload: dict[_Key, list[GroupedStats]] = {}
            for key, g in taken[ts].groups.items():
                per_payload.setdefault(key[_K_PAYLOAD], []).append(_to_grouped(key, g))
            for pkey, groups in per_payload.items():
                payload = by_payload.get(pkey)
                if payload is None:
                    env, version, hostname, container = pkey
                    payload = by_payload[pkey] = ClientStatsPayload(
                        hostname=hostname, env=env, version=version, stats=[],
                        container_id=container,
                    )
                payload.stats.append(StatsBucket(start=ts, duration=bucket_ns, stats=groups))
        return list(by_payload.values())


def _to_grouped(key: _Key, g: _Group) -> GroupedStats:
    return GroupedStats(
        service=key[_K_SERVICE],
        name=key[_K_NAME],
        resource=key[_K_RESOURCE],
        type=key[_K_TYPE],
        http_status_code=key[_K_STATUS],
        span_kind=key[_K_KIND],
        synthetics=key[_K_SYNTH],
        is_trace_root=key[_K_ROOT],
        peer_tags=key[_K_PEER],
        grpc_status_code=key[_K_GRPC],
        http_method=key[_K_METHOD],
        http_endpoint=key[_K_ENDPOINT],
        service_source=key[_K_SVC_SRC],
        hits=g.hits,
        errors=g.errors,
        duration=g.duration,
        top_level_hits=g.top_hits,
        ok_summary=g.ok.to_proto() if g.ok is not None else encode_empty(),
        error_summary=g.err.to_proto() if g.err is not None else encode_empty(),
    )

