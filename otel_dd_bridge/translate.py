"""OTel SDK spans -> Datadog spans, as the Datadog Agent's OTLP ingest produces them.

A pure function of ``(spans, options)``: no environment reads, no globals written, no I/O.

Upstream behaviour followed: profile "agent" of ``spec/translation.md`` ("agent-default" in the
issues), i.e. the newest Agent's receiver V2 (``transform.OtelSpanToDDSpan``) with operation and
resource naming V2 and the semantics-registry lookups (span attribute before resource
attribute *per key*, typed), plus the four documented project conventions:

* D1 top-level/measured by span kind (``top_level="by_kind"``, option ``"classic"``);
* D2 ``error.msg/type/stack`` copied from ``exception`` events (``error_tags_from_events``);
* D3 ``_dd.p.tid`` on the first span of each chunk (``emit_p_tid``);
* D4 root meta ``_dd.hostname`` when the resource names a host (``emit_root_hostname``).

Legacy naming V1 (``<scope>.<kind>``) is used when ``span_name_as_resource_name`` or
``span_name_remappings`` is set, as in the Agent.

Deliberately left out: the Agent's obfuscation (done by the Agent, or by the agentless path),
``ignore_resources`` filters, the experimental OTel-compliant translation, the removed
``datadog.*`` override namespace (such attributes are ordinary tags, as in the newest Agent).

Hot path design (spec/performance.md): one pass over the span's attribute dict; every
per-resource and per-scope value (remapped resource meta, service, env, version, hostname,
payload info, ``otel.library.*``) computed once and cached by object identity with a bound;
the SDK's private attribute dict read directly with a public-API fallback; JSON only for spans
that have events or links. The per-span steps run inline in one loop per batch
(:func:`_translate_batch`), which keeps the last resource, trace-id hex, meta tail and chunk in
local variables; a resource-key bit in the per-key memo skips the per-span key-clash test.
The meta tail (what a plain span gets from its resource, scope and status) is not copied into
each span: the span keeps a reference to the shared dict (``DDSpan._tail``, keys disjoint from
its own), the compiled encoders write it after the span's entries, and reading ``meta`` merges
it (see :class:`~otel_dd_bridge.model.DDSpan`). In the compiled build the new spans, chunks and
chunk lists are left out of the cyclic GC (:mod:`otel_dd_bridge._gcutil`): they cannot form a
cycle, and tracked they would make the exporter trigger collections of the host's whole heap.
"""

from __future__ import annotations

import base64
import decimal
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _encode_basestring
from types import MappingProxyType
from typing import Any, Final, Literal, final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as _SdkSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceState

from otel_dd_bridge._accel import extensions_disabled
from otel_dd_bridge._ddstate import parse_dd_member
from otel_dd_bridge.model import DDSpan, PayloadInfo, TraceChunk
from otel_dd_bridge.normalize import (
    MAX_RESOURCE_LEN,
    MAX_TYPE_LEN,
    normalize_name,
    normalize_service,
    normalize_tag_value,
    truncate_meta_key,
    truncate_meta_value,
    truncate_utf8,
)
from otel_dd_bridge.version import __version__

logger = logging.getLogger(__name__)

__all__ = ["TranslateOptions", "TranslateResult", "translate_spans", "translate_spans_with_stats"]

Hook = Callable[[ReadableSpan, DDSpan], "str | None"]
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_U64: Final = (1 << 64) - 1

# The compiled build's GC helper (see the module docstring); None runs everything as is.
_UNTRACK: Callable[[Any], Any] | None = None
if not extensions_disabled():
    try:
        from otel_dd_bridge._gcutil import untrack as _UNTRACK
    except ImportError:  # pragma: no cover - depends on the install
        _UNTRACK = None


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    """Options of the translation (see the module docstring for the profile they tune).

    ``service``/``env``/``version`` behave as if they were the resource's ``service.name``,
    ``deployment.environment.name`` and ``service.version`` (they override the resource; a
    span-level attribute still wins). ``tags`` behave as extra resource attributes that do not
    override existing ones. Hooks run after the rules; returning ``None`` keeps the computed
    value; a hook's result is normalized like a computed value; a hook that raises is logged and
    ignored.
    """

    service: str | None = None
    env: str | None = None
    version: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    top_level: Literal["by_kind", "classic"] = "by_kind"
    error_tags_from_events: bool = True
    emit_p_tid: bool = True
    emit_root_hostname: bool = True
    span_name_as_resource_name: bool = False
    span_name_remappings: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    sampling_percentage: float = 100.0
    name_hook: Hook | None = None
    resource_hook: Hook | None = None
    service_hook: Hook | None = None
    max_cached_resources: int = 256

    @property
    def legacy_naming(self) -> bool:
        return self.span_name_as_resource_name or bool(self.span_name_remappings)


@dataclass(slots=True)
class TranslateResult:
    chunks: list[TraceChunk]
    dropped: int = 0  # spans that could not be translated (invalid ids, broken objects)
    hook_errors: int = 0


# --------------------------------------------------------------------------- value helpers

_KIND_META: Final = {
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
    SpanKind.INTERNAL: "internal",
}
_STATUS_META: Final = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}

# R2 key remapping (GetDDKeyForOTLPAttribute, HTTP mappings), span and resource attributes.
_HTTP_KEY_MAP: Final = {
    "client.address": "http.client_ip",
    "http.response.body.size": "http.response.content_length",
    "http.response.status_code": "http.status_code",
    "http.request.body.size": "http.request.content_length",
    "http.request.header.referrer": "http.referrer",
    "http.request.method": "http.method",
    "network.protocol.version": "http.version",
    "server.address": "http.server_name",
    "url.full": "http.url",
    "user_agent.original": "http.useragent",
}
_FIELD_KEYS: Final = frozenset(("service.name", "operation.name", "resource.name", "span.type"))
_KEY_CACHE: Final[dict[str, str]] = {}
_GENAI_KEYS: Final[set[str]] = set()  # every gen_ai.* key seen by _dd_key (bounded)


def _dd_key(k: str) -> str:
    """The Datadog meta/metrics key of an OTel attribute key, memoised (bounded)."""
    dk = _KEY_CACHE.get(k)
    if dk is None:
        dk = _HTTP_KEY_MAP.get(k)
        if dk is None:
            if k.startswith("http.request.header."):
                dk = "http.request.headers." + k[len("http.request.header.") :]
            else:
                dk = k
        dk = truncate_meta_key(dk)
        if k.startswith("gen_ai.") and len(_GENAI_KEYS) < 4096:
            _GENAI_KEYS.add(k)
        if len(_KEY_CACHE) < 4096:
            _KEY_CACHE[k] = dk
    return dk


_NAME_CACHE: Final[dict[str, str]] = {}
_TAGV_CACHE: Final[dict[str, str]] = {}
_MEMO_BOUND: Final = 4096


def _memo(cache: dict[str, str], fn: Callable[[str], str], v: str) -> str:
    """``fn(v)`` through a bounded memo: names and tag values repeat across spans."""
    out = cache.get(v)
    if out is None:
        out = fn(v)
        if len(cache) >= _MEMO_BOUND:
            cache.clear()
        cache[v] = out
    return out


def _norm_name(name: str) -> str:
    return _memo(_NAME_CACHE, normalize_name, name)


def _norm_tagv(v: str) -> str:
    return _memo(_TAGV_CACHE, normalize_tag_value, v)


def _go_float(f: float) -> str:
    """Format a float as Go's ``encoding/json`` does (ES6 style): 2.0 -> 2, 1e21 -> 1e+21."""
    if f == 0:
        return "0"
    a = abs(f)
    if a < 1e21 and f == int(f):
        return str(int(f))
    r = repr(f)
    if 1e-6 <= a < 1e21:
        if "e" in r:
            return format(decimal.Decimal(r), "f")
        return r
    mant, _, exp = r.partition("e")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"


def _json_str(s: str) -> str:
    # Go's json.Marshal escapes <, >, & and U+2028/2029; keep non-ASCII as UTF-8.
    # encode_basestring is what json.dumps(s, ensure_ascii=False) calls for a str, without
    # building a JSONEncoder per call (json.dumps does that for non-default arguments).
    out = _encode_basestring(s)
    if "<" in out or ">" in out or "&" in out or "\u2028" in out or "\u2029" in out:
        out = (
            out.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return out


def _json_value(v: Any) -> str:
    """Typed JSON of an attribute value, Go formatting (pdata ``AsRaw`` + ``json.Marshal``)."""
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # UNCERTAIN: Go's json.Marshal fails on NaN/Inf (the Agent then writes "redacted" for the
        # whole value); we keep the information as a JSON string instead.
        return _go_float(v) if math.isfinite(v) else _json_str(_float_str(v))
    if isinstance(v, (bytes, bytearray)):
        return _json_str(base64.b64encode(bytes(v)).decode("ascii"))
    if isinstance(v, Mapping):
        return "{" + ",".join(_json_str(str(k)) + ":" + _json_value(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_json_value(x) for x in v) + "]"
    if v is None:
        return "null"
    return _json_str(str(v))


def _float_str(f: float) -> str:
    if f != f:
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return _go_float(f)


def _as_string(v: Any) -> str:
    """pdata ``Value.AsString``: how a non-string attribute becomes a meta value."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_str(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if v is None:
        return ""
    return _json_value(v)


def _attrs(obj: Any) -> Mapping[str, Any]:
    """The plain attribute dict of a span/event/link/resource/scope (private fast path)."""
    a = getattr(obj, "_attributes", None)
    d = getattr(a, "_dict", None)
    if type(d) is dict:
        return d
    pub = getattr(obj, "attributes", None)
    return pub if pub is not None else _EMPTY


# Typed concept lookups (translation.md §0.2): key order is the outer loop, span before resource.
def _str_concept(keys: tuple[str, ...], a: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    for k in keys:
        v = a.get(k)
        if type(v) is str and v:
            return v
        v = r.get(k)
        if type(v) is str and v:
            return v
    return ""


def _int_of(v: Any, allow_str: bool) -> int | None:
    t = type(v)
    if t is int:
        return int(v)
    if t is float and math.isfinite(v) and v == int(v):
        return int(v)
    if allow_str and t is str:
        try:
            return int(v.strip(), 10)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None
            return int(f) if math.isfinite(f) and f == int(f) else None
    return None


_STATUS_CODE_KEYS: Final = (
    ("http.status_code", False),
    ("http.status_code", True),
    ("http.response.status_code", False),
    ("http.response.status_code", True),
)


def _status_code(a: Mapping[str, Any], r: Mapping[str, Any]) -> int | None:
    for k, allow_str in _STATUS_CODE_KEYS:
        for src in (a, r):
            v = src.get(k)
            if v is None:
                continue
            if not allow_str and type(v) is str:
                continue
            code = _int_of(v, allow_str)
            if code is not None:
                return code
    return None


_GRPC_KEYS: Final = ("rpc.grpc.status_code", "grpc.code", "rpc.grpc.status.code", "grpc.status.code")
_GRPC_TRIGGERS: Final = frozenset((*_GRPC_KEYS, "rpc.response.status_code"))


def _grpc_code(a: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    for k in _GRPC_KEYS:
        for src in (a, r):
            v = src.get(k)
            if type(v) is str and v:
                return v
        for src in (a, r):
            v = src.get(k)
            iv = _int_of(v, False) if type(v) is not bool else None
            if iv is not None:
                return str(iv)
    # UNCERTAIN (§0.2): the registry's `when` condition on rpc.response.status_code; we enforce
    # it (only for gRPC spans), the conservative reading.
    sys_name = _str_concept(("rpc.system.name",), a, r)
    if sys_name == "grpc" or (not sys_name and _str_concept(("rpc.system",), a, r) == "grpc"):
        v = a.get("rpc.response.status_code", r.get("rpc.response.status_code"))
        if type(v) is str and v:
            return v
        iv = _int_of(v, False) if type(v) is not bool else None
        if iv is not None:
            return str(iv)
    return ""


_GO_STATUS_TEXT: Final = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Found", 303: "See Other", 304: "Not Modified", 305: "Use Proxy",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large", 414: "Request URI Too Long",
    415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable",
    417: "Expectation Failed", 418: "I'm a teapot", 421: "Misdirected Request",
    422: "Unprocessable Entity", 423: "Locked", 424: "Failed Dependency", 425: "Too Early",
    426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    510: "Not Extended", 511: "Network Authentication Required",
}

# R2 db.system -> span type (translation.md §4).
_SQL_SYSTEMS: Final = frozenset(
    "other_sql mssql mysql oracle db2 postgresql redshift cloudscape hsqldb maxdb ingres "
    "firstsql edb cache firebird derby informix mariadb sqlite sybase teradata vertica h2 "
    "coldfusion cockroachdb progress hanadb adabas filemaker instantdb interbase netezza "
    "pervasive pointbase clickhouse".split()
)
_DB_TYPES: Final = {
    "cassandra": "cassandra", "redis": "redis", "memcached": "memcached", "mongodb": "mongodb",
    "elasticsearch": "elasticsearch", "opensearch": "opensearch",
}


def _db_type(system: str) -> str:
    s = normalize_tag_value(system)
    if s in _SQL_SYSTEMS:
        return "sql"
    return _DB_TYPES.get(s, "db")


# --------------------------------------------------------------------------- per resource

_REJECTED_HOSTS: Final = frozenset(
    ("0.0.0.0", "127.0.0.1", "localhost", "localhost.localdomain", "localhost6.localdomain6",
     "ip6-localhost")
)


def _resource_hostname(r: Mapping[str, Any]) -> str:
    """Hostname from resource attributes (translation.md §1.4); "" when none."""
    def ok(v: Any) -> str:
        s = _as_string(v) if v is not None else ""
        return s if s and s not in _REJECTED_HOSTS else ""

    for key in ("host", "datadog.host.name"):
        h = ok(r.get(key))
        if h:
            return h
    if str(r.get("aws.ecs.launchtype", "")).lower() == "fargate":
        return ""
    node = ok(r.get("k8s.node.name"))
    if node:
        cluster = ok(r.get("k8s.cluster.name"))
        return f"{node}-{cluster}" if cluster else node
    # UNCERTAIN (§1.4 step 4): the cloud-provider helpers were not read; for aws/gcp/azure we
    # fall through to host.id / host.name, which those helpers also start from.
    for key in ("host.id", "host.name"):
        h = ok(r.get(key))
        if h:
            return h
    return ""


@dataclass(slots=True)
class _ResourceInfo:
    attrs: Mapping[str, Any]
    service: str  # normalized resource-level service
    meta: list[tuple[str, str]]  # remapped resource attributes as strings, in order
    hostname: str
    payload: PayloadInfo
    has_grpc: bool = False  # the resource carries a gRPC status-code key (rare)
    # Precomputed for the per-span fast path (see _translate_batch):
    rules_free: bool = True  # no naming/type rule key among the resource attributes
    status_free: bool = True  # no http status-code key among the resource attributes
    measured: Any = None  # the resource's `_dd.measured` value
    version: str = ""  # service.version from the resource alone
    env_raw: str = ""  # deployment.environment(.name) from the resource alone
    meta_dict: dict[str, str] = field(default_factory=dict)  # `meta` filled into an empty dict
    meta_keys: frozenset[str] = frozenset()
    version_norm: str = ""  # normalized `version`
    # True when a span's meta may clash with `meta_keys` although no attribute has _B_RESKEY
    # (a fixed meta key is a resource key, or the key registry was full).
    clash_check: bool = True
    tails: dict[tuple[int, str], tuple[Any, dict[str, str], bool]] = field(default_factory=dict)


_ENV_KEYS: Final = ("deployment.environment.name", "deployment.environment")

# Resource attribute -> container tag (payload `_dd.tags.container`, translation.md §1.5).
_CONTAINER_TAGS: Final = {
    "container.id": "container_id", "container.name": "container_name",
    "container.image.name": "image_name", "container.image.tag": "image_tag",
    "container.runtime": "runtime", "cloud.provider": "cloud_provider", "cloud.region": "region",
    "cloud.availability_zone": "zone", "aws.ecs.task.family": "task_family",
    "aws.ecs.task.arn": "task_arn", "aws.ecs.cluster.arn": "ecs_cluster_name",
    "aws.ecs.task.revision": "task_version", "aws.ecs.container.arn": "ecs_container_name",
    "k8s.container.name": "kube_container_name", "k8s.cluster.name": "kube_cluster_name",
    "k8s.deployment.name": "kube_deployment", "k8s.replicaset.name": "kube_replica_set",
    "k8s.statefulset.name": "kube_stateful_set", "k8s.daemonset.name": "kube_daemon_set",
    "k8s.job.name": "kube_job", "k8s.cronjob.name": "kube_cronjob",
    "k8s.namespace.name": "kube_namespace", "k8s.pod.name": "pod_name",
}


def _container_tags(r: Mapping[str, Any]) -> dict[str, str]:
    """Container tags from resource attributes only; the semantic mapping wins on collision."""
    tags: dict[str, str] = {}
    for k, v in r.items():
        if k.startswith("datadog.container.tag.") and len(k) > 22:
            tags[k[22:]] = _as_string(v)
    for k, tag in _CONTAINER_TAGS.items():
        v = r.get(k)
        if v is not None and _as_string(v):
            tags[tag] = _as_string(v)
    return tags


def _resource_info(res_attrs: Mapping[str, Any], opts: TranslateOptions) -> _ResourceInfo:
    attrs: dict[str, Any] = dict(opts.tags)
    attrs.update(res_attrs)
    if opts.service is not None:
        attrs["service.name"] = opts.service
    if opts.env is not None:
        attrs.pop("deployment.environment", None)
        attrs["deployment.environment.name"] = opts.env
    if opts.version is not None:
        attrs["service.version"] = opts.version
    svc = attrs.get("service.name")
    service = normalize_service(svc) if type(svc) is str and svc else "otlpresourcenoservicename"
    meta: list[tuple[str, str]] = []
    for k, v in attrs.items():
        if k in _FIELD_KEYS:
            continue
        meta.append((_dd_key(k), truncate_meta_value(_as_string(v))))
    hostname = _resource_hostname(attrs)
    env = normalize_tag_value(_str_concept(_ENV_KEYS, _EMPTY, attrs))
    lang = attrs.get("telemetry.sdk.language")
    sdk_version = attrs.get("telemetry.sdk.version")
    container_id = normalize_tag_value(_str_concept(("container.id", "k8s.pod.uid"), _EMPTY, attrs))
    payload = PayloadInfo(
        hostname=hostname,
        env=env,
        app_version=_str_concept(("service.version",), _EMPTY, attrs),
        container_id=container_id,
        tags=_container_tags(attrs),
        language_name=lang if type(lang) is str and lang else "python",
        tracer_version=(
            f"otlp-{sdk_version}" if type(sdk_version) is str and sdk_version
            else f"otel-dd-bridge-{__version__}"
        ),
    )
    has_grpc = not _GRPC_TRIGGERS.isdisjoint(attrs)
    meta_dict: dict[str, str] = {}
    for k, v in meta:
        if not meta_dict.get(k):
            meta_dict[k] = v
    meta_keys = frozenset(meta_dict)
    clash_check = not _register_res_keys(meta_keys) or not meta_keys.isdisjoint(_FIXED_META_KEYS)
    return _ResourceInfo(
        attrs, service, meta, hostname, payload, has_grpc,
        rules_free=_RESOURCE_RULE_KEYS.isdisjoint(attrs),
        status_free="http.status_code" not in attrs and "http.response.status_code" not in attrs,
        measured=attrs.get("_dd.measured"),
        version=_str_concept(("service.version",), _EMPTY, attrs),
        version_norm=normalize_tag_value(_str_concept(("service.version",), _EMPTY, attrs)),
        env_raw=_str_concept(_ENV_KEYS, _EMPTY, attrs),
        meta_dict=meta_dict,
        meta_keys=meta_keys,
        clash_check=clash_check,
    )


class _Cache:
    """Bounded identity caches, owned by one translation call or one exporter.

    Keyed by ``id()`` and checked with ``is`` (the entry keeps its object alive, so an id is
    never reused while cached). The last resource and scope seen are kept in two slots: spans
    of one batch nearly always share them, which makes the common lookup two identity tests.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.resources: dict[int, tuple[Any, _ResourceInfo]] = {}
        self.scopes: dict[int, tuple[Any, dict[str, str], dict[str, str]]] = {}
        self._last_res: Any = _NOTHING
        self._last_rinfo: _ResourceInfo | None = None
        self._last_scope: Any = _NOTHING
        self._last_lib: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._last_tid = -1
        self._last_tid_hex = ""

    def resource(self, res: Any, opts: TranslateOptions) -> _ResourceInfo:
        if res is self._last_res and self._last_rinfo is not None:
            return self._last_rinfo
        hit = self.resources.get(id(res))
        if hit is not None and hit[0] is res:
            info = hit[1]
        else:
            info = _resource_info(_attrs(res) if res is not None else _EMPTY, opts)
            if len(self.resources) >= self.bound:
                self.resources.clear()
            self.resources[id(res)] = (res, info)
        self._last_res, self._last_rinfo = res, info
        return info

    def scope(self, scope: Any) -> tuple[dict[str, str], dict[str, str]]:
        """``(otel.library/scope name+version, scope attributes)`` as meta, in meta order."""
        if scope is self._last_scope:
            return self._last_lib
        hit = self.scopes.get(id(scope))
        if hit is not None and hit[0] is scope:
            out = hit[1], hit[2]
        else:
            lib: dict[str, str] = {}
            extra: dict[str, str] = {}
            if scope is not None:
                name = getattr(scope, "name", "") or ""
                version = getattr(scope, "version", "") or ""
                if name:
                    lib["otel.library.name"] = name
                    lib["otel.scope.name"] = name
                if version:
                    lib["otel.library.version"] = version
                    lib["otel.scope.version"] = version
                for k, v in (getattr(scope, "attributes", None) or {}).items():
                    extra[truncate_meta_key(k)] = truncate_meta_value(_as_string(v))
            if len(self.scopes) >= self.bound:
                self.scopes.clear()
            self.scopes[id(scope)] = (scope, lib, extra)
            out = lib, extra
        self._last_scope, self._last_lib = scope, out
        return out


_NOTHING: Final = object()


# --------------------------------------------------------------------------- naming rules


def _operation_name_v2(kind: SpanKind, a: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    """Operation name N2 (translation.md §2.3), before NormalizeName."""
    op = _str_concept(("operation.name",), a, r)
    if op:
        return _norm_tagv(op)
    server, client = kind is SpanKind.SERVER, kind is SpanKind.CLIENT
    if _str_concept(("http.request.method", "http.method"), a, r):
        if server:
            return "http.server.request"
        if client:
            return "http.client.request"
    if client:
        db = _str_concept(("db.system.name", "db.system"), a, r)
        if db:
            return _norm_tagv(db) + ".query"
    msys = _str_concept(("messaging.system",), a, r)
    mop = _str_concept(("messaging.operation",), a, r)
    if msys and mop and kind is not SpanKind.INTERNAL:
        return _norm_tagv(msys) + "." + _norm_tagv(mop)
    rpc = _str_concept(("rpc.system",), a, r)
    if rpc:
        if client and rpc == "aws-api":
            svc = _str_concept(("rpc.service",), a, r)
            return f"aws.{_norm_tagv(svc)}.request" if svc else "aws.client.request"
        if client:
            return _norm_tagv(rpc) + ".client.request"
        if server:
            return _norm_tagv(rpc) + ".server.request"
    if client:
        prov = _str_concept(("faas.invoked_provider",), a, r)
        fname = _str_concept(("faas.invoked_name",), a, r)
        if prov and fname:
            return f"{_norm_tagv(prov)}.{_norm_tagv(fname)}.invoke"
    if server:
        trig = _str_concept(("faas.trigger",), a, r)
        if trig:
            return _norm_tagv(trig) + ".invoke"
    if _str_concept(("graphql.operation.type",), a, r):
        return "graphql.server.request"
    if server or client:
        proto = _str_concept(("network.protocol.name",), a, r)
        side = "server" if server else "client"
        if proto:
            return f"{_norm_tagv(proto)}.{side}.request"
        return f"{side}.request"
    if kind is SpanKind.PRODUCER:
        return "Producer"
    if kind is SpanKind.CONSUMER:
        return "Consumer"
    return "Internal"


def _operation_name_v1(
    span: ReadableSpan, kind: SpanKind, a: Mapping[str, Any], r: Mapping[str, Any],
    opts: TranslateOptions,
) -> str:
    """Operation name N1 (legacy, §2.2): resource-first lookups, ``<scope>.<kind>``."""
    op = r.get("operation.name") or a.get("operation.name")
    if type(op) is str and op:
        name = op
    elif opts.span_name_as_resource_name:
        name = span.name
    else:
        scope = span.instrumentation_scope
        prefix = (scope.name if scope is not None else "") or "opentelemetry"
        name = f"{prefix}.{_KIND_META.get(kind, 'internal')}"
    return opts.span_name_remappings.get(name, name)


def _resource_v2(
    span: ReadableSpan, kind: SpanKind, a: Mapping[str, Any], r: Mapping[str, Any]
) -> str:
    """Resource N2 (translation.md §3.1)."""
    res = _str_concept(("resource.name",), a, r)
    if res:
        return res
    method = _str_concept(("http.request.method", "http.method"), a, r)
    if method:
        if method == "_OTHER":
            method = "HTTP"
        if kind is SpanKind.CLIENT:
            tmpl = _str_concept(("url.template",), a, r)
            return f"{method} {tmpl}" if tmpl else method
        if kind is SpanKind.SERVER:
            route = _str_concept(("http.route",), a, r)
            return f"{method} {route}" if route else method
        return method
    mop = _str_concept(("messaging.operation",), a, r)
    if mop:
        dest = _str_concept(("messaging.destination", "messaging.destination.name"), a, r)
        return f"{mop} {dest}" if dest else mop
    rpc_method = _str_concept(("rpc.method",), a, r)
    if rpc_method:
        svc = _str_concept(("rpc.service",), a, r)
        return f"{rpc_method} {svc}" if svc else rpc_method
    gql = _str_concept(("graphql.operation.type",), a, r)
    if gql:
        gname = _str_concept(("graphql.operation.name",), a, r)
        return f"{gql} {gname}" if gname else gql
    if _str_concept(("db.system.name", "db.system"), a, r):
        stmt = _str_concept(("db.statement", "db.query.text"), a, r)
        if stmt:
            return stmt
    return span.name


def _resource_v1(span: ReadableSpan, a: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    """Resource N1 (legacy, §3.2): resource-first lookups, route for any kind."""
    def get(*keys: str) -> str:
        for k in keys:
            for src in (r, a):
                v = src.get(k)
                if type(v) is str and v:
                    return v
        return ""

    res = get("resource.name")
    if res:
        return res
    method = get("http.request.method", "http.method")
    if method:
        route = get("http.route")
        return f"{method} {route}" if route else method
    mop = get("messaging.operation")
    if mop:
        dest = get("messaging.destination", "messaging.destination.name")
        return f"{mop} {dest}" if dest else mop
    rpc_method = get("rpc.method")
    if rpc_method:
        svc = get("rpc.service")
        return f"{rpc_method} {svc}" if svc else rpc_method
    gql = get("graphql.operation.type")
    if gql:
        gname = get("graphql.operation.name")
        return f"{gql} {gname}" if gname else gql
    return span.name


def _span_type(kind: SpanKind, a: Mapping[str, Any], r: Mapping[str, Any]) -> str:
    """Span type (translation.md §4)."""
    t = _str_concept(("span.type",), a, r)
    if t:
        return t
    if kind is SpanKind.SERVER:
        return "web"
    if kind is SpanKind.CLIENT:
        db = _str_concept(("db.system.name", "db.system"), a, r)
        return _db_type(db) if db else "http"
    return "custom"


# --------------------------------------------------------------------------- events, links


def _events_json(events: Sequence[Any]) -> str:
    parts = []
    for ev in events:
        items = []
        ts = getattr(ev, "timestamp", 0) or 0
        if ts:
            items.append(f'"time_unix_nano":{int(ts)}')
        if ev.name:
            items.append('"name":' + _json_str(ev.name))
        attrs = _attrs(ev)
        if attrs:
            items.append('"attributes":' + _json_value(attrs))
        dropped = getattr(getattr(ev, "attributes", None), "dropped", 0) or 0
        if dropped:
            items.append(f'"dropped_attributes_count":{int(dropped)}')
        parts.append("{" + ",".join(items) + "}")
    return "[" + ",".join(parts) + "]"


def _links_json(links: Sequence[Any]) -> str:
    parts = []
    for link in links:
        ctx = link.context
        items = [f'"trace_id":"{ctx.trace_id:032x}"', f'"span_id":"{ctx.span_id:016x}"']
        ts = ctx.trace_state.to_header() if ctx.trace_state else ""
        if ts:
            items.append('"tracestate":' + _json_str(ts))
        attrs = _attrs(link)
        if attrs:
            items.append(
                '"attributes":{'
                + ",".join(_json_str(k) + ":" + _json_str(_as_string(v)) for k, v in attrs.items())
                + "}"
            )
        dropped = getattr(link, "dropped_attributes", 0) or 0
        if dropped:
            items.append(f'"dropped_attributes_count":{int(dropped)}')
        parts.append("{" + ",".join(items) + "}")
    return "[" + ",".join(parts) + "]"


# --------------------------------------------------------------------------- one span

# Per attribute key, memoised: the Datadog key, how the value is copied, and which naming rules
# the key feeds (bits). One dict lookup per attribute replaces the per-rule lookups.
_C_PLAIN: Final = 0  # copy into meta/metrics by value type; no other key can produce the same dd key
_C_CHECK: Final = 1  # the dd key may already be set: meta keeps the first non-empty, metrics the first
_C_FIELD: Final = 2  # span-field key (service.name, ...): never copied
_C_SPECIAL: Final = 3  # analytics.event / sampling.priority / _sampling_priority_v1

_B_METHOD: Final = 1  # http.request.method, http.method
_B_ROUTE: Final = 2  # http.route
_B_URLT: Final = 4  # url.template
_B_DBSYS: Final = 8  # db.system, db.system.name
_B_DBSTMT: Final = 16  # db.statement, db.query.text
_B_DBNS: Final = 32  # db.namespace
_B_ENVVER: Final = 64  # service.version, deployment.environment(.name)
_B_GENAI: Final = 128  # gen_ai.*: the span type is llm
_B_OTHER: Final = 256  # any other naming/type rule key: the general rule engine runs
_B_STATUSKEY: Final = 512  # http.status_code / http.response.status_code (meta must be a valid code)
_B_PRIO: Final = 1024  # sampling.priority / _sampling_priority_v1 (a user sampling priority)
_B_GRPC: Final = 2048  # a gRPC status-code key (_GRPC_TRIGGERS)
_B_RESKEY: Final = 4096  # the dd key is also a meta key of some resource seen (see _register_res_keys)
_B_SVC: Final = 8192  # service.name (a span-level service)
# Bits that do not send a span to the general rule engine (_B_RESKEY, _B_SVC: not rule keys).
_FAST_BITS: Final = (
    _B_METHOD | _B_ROUTE | _B_URLT | _B_DBSYS | _B_DBSTMT | _B_DBNS | _B_ENVVER | _B_STATUSKEY
    | _B_PRIO | _B_GRPC | _B_RESKEY | _B_SVC
)

_RULE_BITS: Final = {
    "http.request.method": _B_METHOD, "http.method": _B_METHOD, "http.route": _B_ROUTE,
    "url.template": _B_URLT, "db.system": _B_DBSYS, "db.system.name": _B_DBSYS,
    "db.statement": _B_DBSTMT, "db.query.text": _B_DBSTMT, "db.namespace": _B_DBNS,
    "service.version": _B_ENVVER, "deployment.environment.name": _B_ENVVER,
    "deployment.environment": _B_ENVVER, "http.status_code": _B_STATUSKEY,
    "http.response.status_code": _B_STATUSKEY, "sampling.priority": _B_PRIO,
    "_sampling_priority_v1": _B_PRIO,
}
for _k in (
    "operation.name", "resource.name", "span.type", "messaging.system", "messaging.operation",
    "messaging.destination", "messaging.destination.name", "rpc.system", "rpc.service",
    "rpc.method", "rpc.system.name", "faas.invoked_provider", "faas.invoked_name",
    "faas.trigger", "graphql.operation.type", "graphql.operation.name", "network.protocol.name",
):
    _RULE_BITS[_k] = _B_OTHER
for _k in _GRPC_TRIGGERS:
    _RULE_BITS[_k] = _RULE_BITS.get(_k, 0) | _B_GRPC
# Resource attributes that feed a per-span rule; a resource holding none of them lets every
# span rule read the span's attributes only (env/version/measured are precomputed per resource).
_RESOURCE_RULE_KEYS: Final = frozenset(
    k for k, b in _RULE_BITS.items() if b != _B_ENVVER
) | frozenset(("_dd.measured",))
_SPECIAL_KEYS: Final = frozenset(("analytics.event", "sampling.priority", "_sampling_priority_v1"))
# dd keys that another attribute or a preset value can also produce.
_SHARED_DD_KEYS: Final = frozenset(_HTTP_KEY_MAP.values()) | frozenset((
    "span.kind", "w3c.tracestate", "rpc.grpc.status_code", "http.status_code", "_top_level",
    "_dd.measured", "_sample_rate", "_sampling_priority_v1", "_dd1.sr.eausr",
))
@final
class _KeyInfo:
    """The memo entry of one attribute key: its dd key, copy code and rule bits.

    Never changed once in the memo (a new entry replaces it). A class rather than a tuple: the
    compiled loop reads typed fields instead of checking and unboxing three tuple items."""

    __slots__ = ("dk", "how", "bits")

    def __init__(self, dk: str, how: int, bits: int) -> None:
        self.dk = dk
        self.how = how
        self.bits = bits


class _KeyMemo(dict[str, _KeyInfo]):
    """The per-key memo; ``memo[k]`` computes a missing entry (``d[k]`` is cheaper than ``get``)."""

    def __missing__(self, k: str) -> _KeyInfo:
        return _key_info(k)


_KEYINFO: Final = _KeyMemo()
# Every meta key of every resource seen (bounded). An attribute whose dd key is in it carries
# _B_RESKEY, so a span whose mask lacks that bit cannot clash with its resource's meta keys and
# the per-span set test is skipped. Entries are only added (never removed), under the lock, so a
# memo entry and the set never disagree.
_RES_DDKEYS: Final[set[str]] = set()
_KEY_LOCK: Final = threading.Lock()
# Meta keys a span can hold before the tail other than attribute keys (see _translate_batch).
_FIXED_META_KEYS: Final = frozenset((
    "span.kind", "rpc.grpc.status_code", "w3c.tracestate", "otel.trace_id", "version",
    "events", "_dd.span_events.has_exception", "_dd.span_links",
))


def _register_res_keys(keys: frozenset[str]) -> bool:
    """Add a resource's meta keys to ``_RES_DDKEYS``; False when the bound stops that."""
    with _KEY_LOCK:
        new = keys - _RES_DDKEYS
        if not new:
            return True
        if len(_RES_DDKEYS) + len(new) > _MEMO_BOUND:
            return False
        _RES_DDKEYS.update(new)
        for k, ki in list(_KEYINFO.items()):
            if ki.dk in new:
                _KEYINFO[k] = _KeyInfo(ki.dk, ki.how, ki.bits | _B_RESKEY)
        return True


def _key_info(k: str) -> _KeyInfo:
    """The memo entry of attribute key ``k``."""
    with _KEY_LOCK:
        return _key_info_locked(k)


def _key_info_locked(k: str) -> _KeyInfo:
    dk = _dd_key(k)
    bits = _RULE_BITS.get(k, 0)
    if k.startswith("gen_ai."):
        bits |= _B_GENAI
    if dk in _RES_DDKEYS:
        bits |= _B_RESKEY
    if k == "service.name":
        bits |= _B_SVC
    if k in _FIELD_KEYS:
        code = _C_FIELD
    elif k in _SPECIAL_KEYS:
        code = _C_SPECIAL
    elif dk != k or dk in _SHARED_DD_KEYS or dk.startswith("http.request.headers."):
        code = _C_CHECK
    else:
        code = _C_PLAIN
    info = _KeyInfo(dk, code, bits)
    if len(_KEYINFO) < _MEMO_BOUND:
        _KEYINFO[k] = info
    return info


def _copy_special(
    k: str, v: Any, dk: str, meta: dict[str, str], metrics: dict[str, float | int]
) -> None:
    """The value-type rules of the three special keys (same as the general copy otherwise)."""
    t = type(v)
    if k == "analytics.event":
        if t is str:
            metrics["_dd1.sr.eausr"] = 1 if v.strip().lower() in ("true", "1", "t") else 0
            return
        if t is bool or t is int or t is float:
            metrics["_dd1.sr.eausr"] = 1 if v else 0
            return
    elif t is int or t is float:  # sampling.priority, _sampling_priority_v1
        metrics["_sampling_priority_v1"] = v
        return
    if t is str:
        if not meta.get(dk):
            meta[dk] = truncate_meta_value(v)
    elif t is bool:
        if not meta.get(dk):
            meta[dk] = "true" if v else "false"
    elif t is int or t is float:
        if dk not in metrics and not (t is float and not _isfinite(v)):
            metrics[dk] = v
    elif not meta.get(dk):
        meta[dk] = truncate_meta_value(_as_string(v))


_isfinite: Final = math.isfinite
_SERVER: Final = SpanKind.SERVER
_CLIENT: Final = SpanKind.CLIENT
_PRODUCER: Final = SpanKind.PRODUCER
_CONSUMER: Final = SpanKind.CONSUMER
_INTERNAL: Final = SpanKind.INTERNAL
_ERROR: Final = StatusCode.ERROR
_OK: Final = StatusCode.OK


def _sdk_fields_present() -> bool:
    """The private fields the fast path reads exist on this SDK version (else: public API)."""
    try:
        probe = ReadableSpan(name="probe", attributes=BoundedAttributes(attributes={"k": 1}))
        fields = ("_context", "_parent", "_resource", "_kind", "_status", "_events", "_links",
                  "_instrumentation_scope", "_start_time", "_end_time", "_name")
        return all(f in vars(probe) for f in fields) and type(
            probe._attributes._dict  # type: ignore[union-attr]
        ) is dict and hasattr(BoundedList(1), "_dq")
    except Exception:  # noqa: BLE001 - an unknown SDK: the public API is always correct
        return False


# Exact types only (a subclass may override a property); empty on an SDK whose internals differ.
_SDK_SPAN_TYPES: Final = frozenset((ReadableSpan, _SdkSpan)) if _sdk_fields_present() else frozenset()
_DB_QUERY_NAME: Final[dict[str, str]] = {}
# id(SpanKind member) -> (span.kind meta, by-kind metrics of a root span, of a child span).
# Keyed by id: hashing an Enum member runs Python code.
_KIND_INFO: Final[dict[int, tuple[str, dict[str, int], dict[str, int]]]] = {
    id(SpanKind.SERVER): ("server", {"_top_level": 1}, {"_top_level": 1}),
    id(SpanKind.CONSUMER): ("consumer", {"_top_level": 1}, {"_top_level": 1}),
    id(SpanKind.CLIENT): ("client", {"_top_level": 1, "_dd.measured": 1}, {"_dd.measured": 1}),
    id(SpanKind.PRODUCER): (
        "producer", {"_top_level": 1, "_dd.measured": 1}, {"_dd.measured": 1}),
    id(SpanKind.INTERNAL): ("internal", {"_top_level": 1}, {}),
}
_DB_TYPE: Final[dict[str, str]] = {}


def _s(a: Mapping[str, Any], k: str) -> str:
    v = a.get(k)
    return v if type(v) is str else ""


def _status_code_a(a: Mapping[str, Any]) -> int | None:
    """:func:`_status_code` for a resource without status-code keys (span attributes only)."""
    v = a.get("http.status_code")
    if v is not None:
        c = v if type(v) is int else _int_of(v, True)
        if c is not None:
            return c
    v = a.get("http.response.status_code")
    if v is not None:
        return v if type(v) is int else _int_of(v, True)
    return None


def _apply_hook(
    hook: Hook, span: ReadableSpan, dd: DDSpan, result: TranslateResult
) -> str | None:
    try:
        v = hook(span, dd)
    except Exception:  # noqa: BLE001 - user code must not break the export
        result.hook_errors += 1
        logger.debug("mapping hook %r raised; keeping the computed value", hook, exc_info=True)
        return None
    return v if isinstance(v, str) else None


def _translate_batch(
    spans: Sequence[ReadableSpan], opts: TranslateOptions, cache: _Cache,
    result: TranslateResult, legacy: bool, by_kind: bool, hooks: bool,
) -> None:
    """Translate ``spans`` into ``result.chunks``, one loop: the per-span steps are inline.

    Untranslatable spans (invalid ids, broken objects) are counted in ``result.dropped``; the
    chunks are grouped by (resource, low trace id) and finished by :func:`_finish_chunks`.
    """
    groups: dict[
        tuple[int, int], tuple[TraceChunk, int, list[int | None], _ResourceInfo, str | None]
    ] = {}
    # The spans of one trace nearly always arrive together: the last group is tried first.
    last_rinfo: _ResourceInfo | None = None
    last_tid = -1
    last_g: tuple[TraceChunk, int, list[int | None], _ResourceInfo, str | None] | None = None
    # Per-loop copies of the cache's last-seen slots (resource, trace-id hex, meta tail).
    l_res: Any = cache._last_res
    l_rinfo = cache._last_rinfo
    l_tid128, l_tid_hex = cache._last_tid, cache._last_tid_hex
    t_scope: Any = _NOTHING
    t_rinfo: _ResourceInfo | None = None
    t_status = ""
    t_tail: dict[str, str] = {}
    t_check = True
    keyinfo = _KEYINFO
    untrack = _UNTRACK
    # Imported names as locals: compiled code looks a module global up in a dict at each use.
    # (Typed as Any on purpose: narrowed to SpanContext, `ctx[1] & _U64` would unbox to a
    # tagged int, which costs more than the generic operations for ids beyond 62 bits.)
    t_spanctx: Any = SpanContext
    t_tracestate: Any = TraceState
    t_status_cls: Any = Status
    t_battrs: Any = BoundedAttributes
    t_blist: Any = BoundedList
    sdk_types = _SDK_SPAN_TYPES
    l_type: Any = None  # the last span type that is one of the SDK's own classes
    # The last trace state read: spans of a trace share one (immutable) TraceState object.
    l_tstate: Any = _NOTHING
    l_tracestate, l_dd_member = "", None
    for span in spans:
        try:
            # 0. read the span: private fields of the SDK's own classes, the public API otherwise
            tp = type(span)
            sdk = tp is l_type or tp in sdk_types
            if sdk:
                l_type = tp
                # One read of the instance dict, then dict lookups: cheaper than one generic
                # attribute lookup (type MRO, then instance dict) per private field.
                sd: dict[str, Any] = span.__dict__
                ctx: Any = sd["_context"]
                parent: Any = sd["_parent"]
                res: Any = sd["_resource"]
                kind: Any = sd["_kind"]
                raw: Any = sd["_attributes"]
                if type(raw) is t_battrs:
                    raw = raw._dict
                # a plain dict (typed: compiled code iterates and looks it up at C level)
                a: dict[str, Any] = raw if type(raw) is dict else dict(_attrs(span))
                status: Any = sd["_status"]
                events: Any = sd["_events"]
                if type(events) is t_blist:
                    events = events._dq  # a deque: C-level iteration
                links: Any = sd["_links"]
                if type(links) is t_blist:
                    links = links._dq
                scope: Any = sd["_instrumentation_scope"]
                start = sd["_start_time"] or 0
                end = sd["_end_time"] or start
            else:
                ctx = span.context
                parent = span.parent
                res = span.resource
                kind = span.kind
                a = dict(_attrs(span))
                status = span.status
                events = getattr(span, "_events", None)
                if events is None:
                    events = span.events
                links = getattr(span, "_links", None)
                if links is None:
                    links = span.links
                scope = span.instrumentation_scope
                start = span.start_time or 0
                end = span.end_time or start
            if ctx is None:
                result.dropped += 1
                continue
            if type(ctx) is t_spanctx:
                trace_id128 = ctx[0]
                span_id = ctx[1] & _U64
                tstate = ctx[4]
            else:
                trace_id128 = ctx.trace_id
                span_id = ctx.span_id & _U64
                tstate = ctx.trace_state
            trace_low = trace_id128 & _U64
            if not trace_low or not span_id:
                result.dropped += 1
                continue
            if parent is not None:
                parent_id = (parent[1] if type(parent) is t_spanctx else parent.span_id) & _U64
                if parent_id == span_id:
                    parent_id = 0  # the Agent normalizer's rule for self-parented spans
            else:
                parent_id = 0
            if tstate is l_tstate:
                tracestate, dd_member = l_tracestate, l_dd_member
            elif type(tstate) is t_tracestate:
                tsd = tstate._dict
                tracestate = tstate.to_header() if tsd else ""
                dd_member = tsd.get("dd") if tsd else None
                l_tstate, l_tracestate, l_dd_member = tstate, tracestate, dd_member
            elif tstate:
                tracestate = tstate.to_header()
                dd_member = tstate.get("dd")
            else:
                tracestate, dd_member = "", None

            if res is l_res and l_rinfo is not None:
                rinfo = l_rinfo
            else:
                rinfo = l_rinfo = cache.resource(res, opts)
                l_res = res
            assert rinfo is not None
            r = rinfo.attrs
            kinfo = _KIND_INFO.get(id(kind))
            if kinfo is None:  # not a SpanKind member
                kind = _INTERNAL
                kinfo = _KIND_INFO[id(kind)]
            kind_s, preset_root, preset_child = kinfo
            if type(status) is t_status_cls:
                status_code = status._status_code
                # The API's Status keeps a description only with StatusCode.ERROR.
                desc = status._description if status_code is _ERROR else None
            elif status is not None:
                status_code = status.status_code
                desc = status.description
            else:
                status_code, desc = StatusCode.UNSET, None
            error = 1 if status_code is _ERROR else 0
            status_s = "Error" if error else ("Ok" if status_code is _OK else "Unset")
            if not error and (scope is not t_scope or rinfo is not t_rinfo or status_s != t_status):
                # The tail of steps 6-10 (see there). Looked up before the attribute pass: a
                # new tail registers its keys in the per-key memo, which that pass then reads.
                hit = rinfo.tails.get((id(scope), status_s))
                if hit is None or hit[0] is not scope:
                    hit = _build_tail(rinfo, scope, status_s, cache)
                t_scope, t_rinfo, t_status = scope, rinfo, status_s
                t_tail, t_check = hit[1], hit[2]

            # 1. preset meta/metrics, in the order the general rules write them
            meta: dict[str, str] = {"span.kind": kind_s}
            if rinfo.status_free:
                v = a.get("http.status_code")
                if v is None:
                    v = a.get("http.response.status_code")
                    code = v if type(v) is int or v is None else _int_of(v, True)
                else:
                    code = v if type(v) is int else _status_code_a(a)
            else:
                code = _status_code(a, r)
            # metrics order: http.status_code, then the by-kind _top_level/_dd.measured presets
            metrics: dict[str, float | int]
            if code is not None and code >= 0:
                metrics = {"http.status_code": code}
                if by_kind:
                    metrics.update(preset_root if parent is None else preset_child)
            elif by_kind:
                metrics = dict(preset_root if parent is None else preset_child)
            else:
                metrics = {}
            if rinfo.has_grpc:
                grpc = _grpc_code(a, r)
                if grpc:
                    meta["rpc.grpc.status_code"] = grpc
            if by_kind:
                service = rinfo.service  # a span-level service.name: after the attribute pass
            else:
                svc_attr = a.get("service.name")
                if type(svc_attr) is str and svc_attr:
                    service = _memo(_SERVICE_CACHE, normalize_service, svc_attr)
                else:
                    service = rinfo.service
                if parent is None or parent.is_remote or (
                    type(svc_attr) is str and svc_attr and service != rinfo.service
                ):
                    metrics["_top_level"] = 1
            if rinfo.measured is not None or "_dd.measured" in a or "_sample_rate" in a:
                measured = a.get("_dd.measured", rinfo.measured)
                if type(measured) in (int, float) and measured == 1:
                    metrics["_dd.measured"] = 1
                sample_rate = a.get("_sample_rate")
                if type(sample_rate) is int or type(sample_rate) is float:
                    metrics["_sample_rate"] = float(sample_rate)
            if tracestate:
                meta["w3c.tracestate"] = tracestate

            # 2. span attributes, one pass through the per-key memo
            mask = 0
            for k, v in a.items():
                ki = keyinfo[k]
                dk = ki.dk
                how = ki.how
                mask |= ki.bits
                t = type(v)
                if how:  # field, special or shared dd key: the checked variants
                    if how == 2:  # _C_FIELD (literal: cheaper than a global in this loop)
                        continue
                    if how == 3:  # _C_SPECIAL
                        _copy_special(k, v, dk, meta, metrics)
                    elif t is str:
                        if dk not in meta or not meta[dk]:
                            meta[dk] = v if len(v) <= 6250 else truncate_meta_value(v)
                    elif t is int:
                        if dk not in metrics:
                            metrics[dk] = v
                    elif t is float:
                        if dk not in metrics and _isfinite(v):
                            metrics[dk] = v
                    elif t is bool:
                        if dk not in meta or not meta[dk]:
                            meta[dk] = "true" if v else "false"
                    elif dk not in meta or not meta[dk]:
                        meta[dk] = truncate_meta_value(_as_string(v))
                elif t is str:
                    meta[dk] = v if len(v) <= 6250 else truncate_meta_value(v)
                elif t is int:
                    metrics[dk] = v
                elif t is float:
                    # UNCERTAIN: NaN/Inf cannot be float64-JSON'd by some consumers; the Agent keeps
                    # them in metrics. We drop non-finite metrics (libdatadog's agentless encoder does).
                    if _isfinite(v):
                        metrics[dk] = v
                elif t is bool:
                    meta[dk] = "true" if v else "false"
                else:
                    meta[dk] = truncate_meta_value(_as_string(v))

            if by_kind and mask & _B_SVC:
                svc_attr = a.get("service.name")
                if type(svc_attr) is str and svc_attr:
                    service = _memo(_SERVICE_CACHE, normalize_service, svc_attr)

            if mask & _B_GRPC and not rinfo.has_grpc:
                grpc = _grpc_code(a, r)
                if grpc:  # it goes right after span.kind and wins over an attribute of the same key
                    meta.pop("rpc.grpc.status_code", None)
                    meta = {"span.kind": meta.pop("span.kind"), "rpc.grpc.status_code": grpc, **meta}

            # 3. operation name, resource, type: inline for plain HTTP/DB shapes, else the rule engine
            sname = sd["_name"] if sdk else span.name
            if not (mask & ~_FAST_BITS) and rinfo.rules_free and not legacy:
                method: Any = ""
                db: Any = ""
                if mask & _B_METHOD:
                    method = a.get("http.request.method")
                    if type(method) is not str or not method:
                        method = _s(a, "http.method")
                if mask & _B_DBSYS:  # the type of a CLIENT span follows db.system even with a method
                    db = a.get("db.system.name")
                    if type(db) is not str or not db:
                        db = a.get("db.system")
                        if type(db) is not str:
                            db = ""
                if kind is _SERVER:
                    name = "http.server.request" if method else "server.request"
                    span_type = "web"
                elif kind is _CLIENT:
                    if method:
                        name = "http.client.request"
                    elif db:
                        name = _DB_QUERY_NAME.get(db) or _db_query_name(db)
                    else:
                        name = "client.request"
                    span_type = (_DB_TYPE.get(db) or _db_type_memo(db)) if db else "http"
                else:
                    name = "Producer" if kind is _PRODUCER else (
                        "Consumer" if kind is _CONSUMER else "Internal")
                    span_type = "custom"
                if method:
                    if method == "_OTHER":
                        method = "HTTP"
                    if kind is _CLIENT:
                        tmpl = _s(a, "url.template") if mask & _B_URLT else ""
                        resource = f"{method} {tmpl}" if tmpl else method
                    elif kind is _SERVER:
                        route = a.get("http.route", "") if mask & _B_ROUTE else ""
                        if type(route) is not str:
                            route = ""
                        resource = f"{method} {route}" if route else method
                    else:
                        resource = method
                elif db and mask & _B_DBSTMT:
                    resource = a.get("db.statement")
                    if type(resource) is not str or not resource:
                        resource = _s(a, "db.query.text") or sname
                else:
                    resource = sname
            else:
                if legacy:
                    name = _operation_name_v1(span, kind, a, r, opts)
                    resource = _resource_v1(span, a, r)
                else:
                    name = _operation_name_v2(kind, a, r)
                    resource = _resource_v2(span, kind, a, r)
                span_type = "llm" if mask & _B_GENAI else _span_type(kind, a, r)
                span_type = truncate_utf8(span_type, MAX_TYPE_LEN)

            # 4. otel.trace_id, version
            if trace_id128 == l_tid128:  # spans of one trace arrive together
                meta["otel.trace_id"] = l_tid_hex
            else:
                l_tid128 = trace_id128
                meta["otel.trace_id"] = l_tid_hex = _hex(trace_id128, 16)
            if "version" not in meta:
                if mask & _B_ENVVER:
                    ver = _str_concept(("service.version",), a, r)
                    if ver:
                        meta["version"] = _norm_tagv(ver)
                elif rinfo.version:
                    meta["version"] = rinfo.version_norm

            # 5. events and links (JSON only when present)
            if events:
                meta["events"] = truncate_meta_value(_events_json(events))
                for ev in events:
                    if ev.name == "exception":
                        meta["_dd.span_events.has_exception"] = "true"
                        break
            if links:
                meta["_dd.span_links"] = truncate_meta_value(_links_json(links))

            # 6.-10. scope, status, error tags, env, resource and scope attributes
            # The shared tail, when the span gets it unchanged and holds none of its keys: left
            # out of `meta` (DDSpan._tail; the encoders write it after meta, `.meta` merges it).
            tail: dict[str, str] | None = None
            if not error and not desc and not (mask & _B_ENVVER) and "env" not in meta:
                # These steps depend only on (resource, scope, status) here: t_tail, looked up
                # above for this span.
                if not (mask & _B_RESKEY or t_check) or meta.keys().isdisjoint(t_tail):
                    tail = t_tail
                elif meta.keys().isdisjoint(rinfo.meta_keys):
                    meta.update(t_tail)  # overwrites of scope/status keys keep their place
                else:
                    _tail_slow(meta, a, r, rinfo, cache.scope(scope), status_s, error, desc, mask,
                               None)
            else:
                _tail_slow(meta, a, r, rinfo, cache.scope(scope), status_s, error, desc, mask,
                           events if opts.error_tags_from_events else None)

            # Datadog header extraction problems (DatadogPropagator) tag the local root, as in ddtrace.
            if parent is not None and (parent[2] if type(parent) is t_spanctx else parent.is_remote):
                perr = getattr(parent, "propagation_error", None)
                if perr:
                    if tail is not None:  # rare: merge rather than reason about the key
                        meta.update(tail)
                        tail = None
                    meta["_dd.propagation_error"] = perr

            # 11. db.name from db.namespace
            if (
                (mask & _B_DBNS or not rinfo.rules_free) and "db.name" not in meta
                and (tail is None or "db.name" not in tail)
            ):
                ns = _str_concept(("db.namespace",), a, r)
                if ns:
                    meta["db.name"] = ns

            # normalizer: http.status_code meta must be a valid code
            if mask & _B_STATUSKEY or not rinfo.status_free:
                if tail is not None and "http.status_code" in tail:
                    meta.update(tail)
                    tail = None
                sc = meta.get("http.status_code")
                if sc is not None:
                    icode = _int_of(sc, True)
                    if icode is None or not 100 <= icode <= 599:
                        del meta["http.status_code"]

            nn = _NAME_CACHE.get(name) or _norm_name(name)
            if len(resource) > 1250:
                resource = truncate_utf8(resource, MAX_RESOURCE_LEN)
            dd = DDSpan(
                trace_low, span_id, parent_id, service, nn, resource or nn, span_type, start,
                end - start if end >= start else 0, error, meta, metrics,
            )
            if tail is not None:
                dd._tail = tail
            if untrack is not None:
                untrack(dd)
            if hooks:
                if opts.service_hook is not None:
                    v2 = _apply_hook(opts.service_hook, span, dd, result)
                    if v2 is not None:
                        dd.service = normalize_service(v2)
                if opts.name_hook is not None:
                    v2 = _apply_hook(opts.name_hook, span, dd, result)
                    if v2 is not None:
                        dd.name = _norm_name(v2)
                if opts.resource_hook is not None:
                    v2 = _apply_hook(opts.resource_hook, span, dd, result)
                    if v2 is not None:
                        dd.resource = truncate_utf8(v2, MAX_RESOURCE_LEN) or dd.name
                tid = dd.trace_id  # a hook may have changed it
            else:
                tid = trace_low
            prio = None
            if mask & _B_PRIO:
                user_priority = metrics.get("_sampling_priority_v1")
                prio = int(user_priority) if user_priority is not None else None
            g: tuple[TraceChunk, int, list[int | None], _ResourceInfo, str | None] | None
            if rinfo is last_rinfo and tid == last_tid and last_g is not None:
                g = last_g
            else:
                key = (id(rinfo), tid)
                g = groups.get(key)
                if g is None:
                    chunk_spans: list[DDSpan] = []
                    chunk = TraceChunk(spans=chunk_spans)
                    if untrack is not None:
                        untrack(chunk_spans)
                        untrack(chunk)
                    g = (chunk, trace_id128 >> 64, [None], rinfo, dd_member)
                    groups[key] = g
                    result.chunks.append(g[0])
                last_rinfo, last_tid, last_g = rinfo, tid, g
            g[0].spans.append(dd)
            if prio is not None:
                g[2][0] = prio  # last span seen wins (§7.2)
        except Exception:  # noqa: BLE001 - bad span data must not break the batch
            logger.debug("could not translate span %r", getattr(span, "name", "?"), exc_info=True)
            result.dropped += 1
    cache._last_tid, cache._last_tid_hex = l_tid128, l_tid_hex
    _finish_chunks(groups.values(), opts)


_SERVICE_CACHE: Final[dict[str, str]] = {}


def _tail_slow(
    meta: dict[str, str], a: Mapping[str, Any], r: Mapping[str, Any], rinfo: _ResourceInfo,
    lib_scope: tuple[dict[str, str], dict[str, str]], status_s: str, error: int,
    desc: str | None, mask: int, events: Any,
) -> None:
    """Steps 6-10 of a span, one by one (errors, descriptions, span-level env, key clashes)."""
    lib, scope_attrs = lib_scope
    # 6. scope and status
    if lib:
        meta.update(lib)
    meta["otel.status_code"] = status_s
    if desc:
        meta["otel.status_description"] = truncate_meta_value(desc)
    # 7. error tags (§6)
    if error and not ("error.msg" in meta and "error.type" in meta and "error.stack" in meta):
        _error_tags(meta, events, desc)
    # 8. env
    if "env" not in meta:
        env = _str_concept(_ENV_KEYS, a, r) if mask & _B_ENVVER else rinfo.env_raw
        if env:
            meta["env"] = _norm_tagv(env)
    elif meta["env"]:
        meta["env"] = _norm_tagv(meta["env"])
    # 9. resource attributes (fill in only); 10. scope attributes (overwrite)
    if meta.keys().isdisjoint(rinfo.meta_keys):
        meta.update(rinfo.meta_dict)
    else:
        for k, v in rinfo.meta:
            if not meta.get(k):
                meta[k] = v
    if scope_attrs:
        meta.update(scope_attrs)


def _build_tail(
    rinfo: _ResourceInfo, scope: Any, status_s: str, cache: _Cache
) -> tuple[Any, dict[str, str], bool]:
    """Steps 6-10 applied to an empty meta: what a plain span of this resource/scope gets.

    Valid for a span whose meta holds none of the resource's meta keys nor ``env``, that has
    no status description, no error and no span-level env: then ``meta.update(tail)`` leaves
    the same keys, values and order as the steps one by one (overwrites keep a key's place).

    The third item is True when a span may hold one of the tail's keys although no attribute
    of it carries ``_B_RESKEY``: the tail's keys are registered like resource keys, so a span
    whose mask lacks the bit holds none of them and can share the tail without a set test.
    """
    tail: dict[str, str] = {}
    _tail_slow(tail, _EMPTY, _EMPTY, rinfo, cache.scope(scope), status_s, 0, None, 0, None)
    if len(rinfo.tails) >= 64:
        rinfo.tails.clear()
    extra = frozenset(tail) - rinfo.meta_keys
    check = (
        rinfo.clash_check or not _register_res_keys(extra)
        or not extra.isdisjoint(_FIXED_META_KEYS)
    )
    out = (scope, tail, check)
    rinfo.tails[(id(scope), status_s)] = out
    return out


def _hex(v: int, nbytes: int) -> str:
    """``v`` as ``2 * nbytes`` zero-padded lowercase hex digits, i.e. ``f"{v:0{2*nbytes}x}"``
    (what that gives for a negative or wider ``v`` too), about ten times faster compiled: an
    f-string with a format spec goes through ``str.format``."""
    try:
        return v.to_bytes(nbytes, "big").hex()
    except OverflowError:  # negative, or wider than nbytes
        return f"{v:0{2 * nbytes}x}"


def _db_query_name(db: str) -> str:
    out = _norm_tagv(db) + ".query"
    if len(_DB_QUERY_NAME) < _MEMO_BOUND:
        _DB_QUERY_NAME[db] = out
    return out


def _db_type_memo(db: str) -> str:
    out = _db_type(db)
    if len(_DB_TYPE) < _MEMO_BOUND:
        _DB_TYPE[db] = out
    return out


def _error_tags(meta: dict[str, str], events: Any, desc: str | None) -> None:
    """error.msg/type/stack of an error span (§6): exception events, then status, then code."""
    if events:
        for ev in events:
            if ev.name.lower() != "exception":
                continue
            ea = _attrs(ev)
            for src, dst in (
                ("exception.message", "error.msg"),
                ("exception.type", "error.type"),
                ("exception.stacktrace", "error.stack"),
            ):
                if src in ea:
                    meta[dst] = truncate_meta_value(_as_string(ea[src]))
    if "error.msg" not in meta:
        if desc:
            meta["error.msg"] = truncate_meta_value(desc)
        else:
            raw = meta.get("http.status_code") or meta.get("http.response.status_code")
            if raw:
                icode = _int_of(raw, True)
                if icode is not None:
                    text = _GO_STATUS_TEXT.get(icode)
                    meta["error.msg"] = f"{icode} {text}" if text else str(icode)
                else:
                    meta["error.msg"] = raw


# --------------------------------------------------------------------------- chunks

_KNUTH: Final = 1111111111111111111


def _finish_chunk(
    chunk: TraceChunk, high: int, user_prio: int | None, dd_member: str | None,
    opts: TranslateOptions, rinfo: _ResourceInfo,
) -> None:
    first = chunk.spans[0]
    # Datadog context propagated from upstream (DatadogPropagator / tracestate `dd=`): its
    # priority, decision maker, origin and `_dd.p.*` tags win over the local probabilistic rule,
    # so every service of a trace reports one sampling decision.
    upstream = parse_dd_member(dd_member) if dd_member else None
    if upstream is not None:
        for k, v in upstream.tags.items():
            first.meta_setdefault(k, v)
        if upstream.origin:
            chunk.origin = upstream.origin
            for s in chunk.spans:
                s.meta_set("_dd.origin", upstream.origin)
    if user_prio is not None:
        prio, dm = user_prio, "-4"
    elif upstream is not None and upstream.priority is not None:
        prio, dm = upstream.priority, upstream.tags.get("_dd.p.dm", "-0")
    else:
        pct = opts.sampling_percentage
        rate = pct / 100.0
        if rate <= 0 or rate >= 1:
            prio, dm = 1, "-9"
        else:
            keep = ((first.trace_id * _KNUTH) & _U64) < rate * 18446744073709551616.0
            prio, dm = (1 if keep else 0), "-9"
        if 0 < rate < 1:
            chunk.tags["_dd.otlp_sr"] = f"{rate:.2f}"
    chunk.priority = prio
    first.metrics["_sampling_priority_v1"] = prio
    if prio in (1, 2):
        first.meta_set("_dd.p.dm", dm)
        chunk.tags["_dd.p.dm"] = dm
    if opts.emit_p_tid and high:
        first.meta_set("_dd.p.tid", _hex(high, 8))
    if opts.emit_root_hostname and rinfo.hostname:
        for s in chunk.spans:
            if s.parent_id == 0:
                s.meta_set("_dd.hostname", rinfo.hostname)
    chunk.payload = rinfo.payload


def _finish_chunks(
    groups: Iterable[tuple[TraceChunk, int, list[int | None], _ResourceInfo, str | None]],
    options: TranslateOptions,
) -> None:
    """Chunk-level meta/metrics of every group; the common case inline, else _finish_chunk."""
    rate = options.sampling_percentage / 100.0
    # _finish_chunk's "keep everything" branch (priority 1, decision maker -9); NaN is not it
    plain = rate <= 0 or rate >= 1
    p_tid, root_host = options.emit_p_tid, options.emit_root_hostname
    for chunk, high, prio_box, rinfo, dd_member in groups:
        if plain and dd_member is None and prio_box[0] is None:
            # _finish_chunk's steps for a chunk without upstream context or user priority
            first = chunk.spans[0]
            chunk.priority = 1
            first.metrics["_sampling_priority_v1"] = 1
            first.meta_set("_dd.p.dm", "-9")
            chunk.tags["_dd.p.dm"] = "-9"
            if p_tid and high:
                first.meta_set("_dd.p.tid", _hex(high, 8))
            if root_host and rinfo.hostname:
                for s in chunk.spans:
                    if s.parent_id == 0:
                        s.meta_set("_dd.hostname", rinfo.hostname)
            chunk.payload = rinfo.payload
        else:
            _finish_chunk(chunk, high, prio_box[0], dd_member, options, rinfo)


def translate_spans_with_stats(
    spans: Sequence[ReadableSpan], options: TranslateOptions, *, _cache: _Cache | None = None
) -> TranslateResult:
    """Translate a batch; never raises. Untranslatable spans are skipped and counted."""
    result = TranslateResult(chunks=[])
    cache = _cache if _cache is not None else _Cache(options.max_cached_resources)
    hooks = (
        options.service_hook is not None or options.name_hook is not None
        or options.resource_hook is not None
    )
    _translate_batch(
        spans, options, cache, result, options.legacy_naming, options.top_level == "by_kind",
        hooks,
    )
    return result


def translate_spans(spans: Sequence[ReadableSpan], options: TranslateOptions) -> list[TraceChunk]:
    """Translate a batch of finished OTel spans into Datadog trace chunks (never raises)."""
    return translate_spans_with_stats(spans, options).chunks
