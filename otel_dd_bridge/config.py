"""Configuration: every setting, resolved in one place.

This is the only module that reads ``os.environ``. Precedence, for every setting:

    explicit constructor argument  >  ``DD_*`` variable  >  ``OTEL_*`` equivalent  >  default

A malformed **explicit argument** raises :class:`ValueError` naming the argument (a programming
error the user must see at construction). A malformed **environment value** logs one warning and
falls back to the next source: ``opentelemetry-instrument`` builds the exporter with no
arguments, and a typo in a deployment manifest must not crash the application.

Bridge-only settings share the ``OTEL_DD_BRIDGE_`` prefix; settings that mean the same as a
Datadog tracer setting reuse its ``DD_*`` name. :data:`SETTINGS` is the registry the README table
and ``otel-dd-bridge check`` are generated from.
"""

from __future__ import annotations

import logging
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_AGENT_URL",
    "DEFAULT_UDS_PATH",
    "SETTINGS",
    "AgentEndpoint",
    "ExporterConfig",
    "Setting",
    "parse_agent_url",
    "parse_dd_tags",
    "resolve_config",
]

ApiVersion = Literal["v0.4", "v0.5"]
Mode = Literal["agent", "agentless"]
TopLevel = Literal["by_kind", "classic"]

DEFAULT_UDS_PATH = "/var/run/datadog/apm.socket"
DEFAULT_AGENT_URL = "http://localhost:8126"
_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """Where the Agent listens: a base URL for HTTP(S), or a Unix socket path."""

    url: str  # normalized: ``http(s)://host:port[/base]`` or ``unix:///path``
    uds_path: str | None = None

    @property
    def http_base(self) -> str:
        """The base URL httpx sends to (a placeholder host when on a Unix socket)."""
        return "http://localhost" if self.uds_path else self.url


def parse_agent_url(value: str) -> AgentEndpoint:
    """Validate and normalize an Agent URL (``http://``, ``https://`` or ``unix:///path``).

    Raises:
        ValueError: the URL has another scheme, no host, or a relative socket path.
    """
    raw = value.strip()
    parts = urllib.parse.urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        # unix:///var/run/x.sock -> netloc "" and path "/var/run/x.sock"
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path.startswith("/"):
            raise ValueError(f"unix socket path must be absolute: {value!r}")
        if "\x00" in path:
            raise ValueError(f"unix socket path contains a NUL byte: {value!r}")
        return AgentEndpoint(url=f"unix://{path}", uds_path=path)
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http, https or unix: {value!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {value!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {value!r}") from exc
    if parts.query or parts.fragment:
        raise ValueError(f"URL must not have a query or fragment: {value!r}")
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    base = parts.path.rstrip("/")
    return AgentEndpoint(url=f"{scheme}://{netloc}{base}")


def parse_dd_tags(value: str) -> dict[str, str]:
    """Parse ``DD_TAGS``: ``k:v`` pairs separated by commas (if any) else whitespace.

    A tag without ``:`` gets the value ``""``, as in dd-trace-py.
    """
    sep = "," if "," in value else None
    out: dict[str, str] = {}
    for item in value.split(sep):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition(":")
        key = key.strip()
        if key:
            out[key] = val.strip()
    return out


# --------------------------------------------------------------------------- value parsers
# Each parser takes the raw value (str from the environment, anything from an argument) and
# returns the typed value or raises ValueError with a short reason.


def _p_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string")
    return v.strip()


def _p_opt_str(v: Any) -> str | None:
    s = _p_str(v)
    return s or None


def _p_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
    raise ValueError("must be a boolean (true/false)")


def _p_pos_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("must be a positive number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError("must be a positive number") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError("must be a positive number")
    return f


def _p_pos_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("must be a positive integer")
    if isinstance(v, str):
        v = v.strip().replace("_", "")
        if not re.fullmatch(r"\d+", v):
            raise ValueError("must be a positive integer")
    if not isinstance(v, (int, str)):
        raise ValueError("must be a positive integer")
    i = int(v)
    if i <= 0:
        raise ValueError("must be a positive integer")
    return i


def _p_nonneg_int(v: Any) -> int:
    if (isinstance(v, int) and not isinstance(v, bool) and v == 0) or (
        isinstance(v, str) and v.strip() == "0"
    ):
        return 0
    try:
        return _p_pos_int(v)
    except ValueError:
        raise ValueError("must be a non-negative integer") from None


def _p_percentage(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("must be a number between 0 and 100")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError("must be a number between 0 and 100") from None
    if not (0.0 <= f <= 100.0):
        raise ValueError("must be a number between 0 and 100")
    return f


def _p_choice(*choices: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = _p_str(v).lower()
        if s not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return s

    return parse


def _p_api_version(v: Any) -> str:
    s = _p_str(v).lower()
    if not s.startswith("v"):
        s = "v" + s
    if s not in ("v0.4", "v0.5"):
        raise ValueError("must be v0.4 or v0.5")
    return s


def _p_agent_url(v: Any) -> AgentEndpoint:
    if isinstance(v, AgentEndpoint):
        return v
    return parse_agent_url(_p_str(v))


#: Datadog sites known to exist (wire.md §3.1-3.2); another well-formed site is used with a warning.
KNOWN_SITES = frozenset({
    "datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu",
    "ap1.datadoghq.com", "ap2.datadoghq.com", "uk1.datadoghq.com", "ddog-gov.com",
    "datad0g.com",
})
_SITE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


def _p_site(v: Any) -> str:
    s = _p_str(v).lower().rstrip(".")
    if not _SITE_RE.fullmatch(s):
        raise ValueError("must be a Datadog site host name such as datadoghq.com or datadoghq.eu")
    return s


def _p_intake_url(v: Any) -> str:
    ep = _p_agent_url(v)
    if ep.uds_path:
        raise ValueError("must be an http:// or https:// URL")
    return ep.url


def _p_tags(v: Any) -> Mapping[str, str]:
    if isinstance(v, str):
        return MappingProxyType(parse_dd_tags(v))
    if isinstance(v, Mapping):
        out: dict[str, str] = {}
        for k, val in v.items():
            if not isinstance(k, str) or not k:
                raise ValueError("tag keys must be non-empty strings")
            out[k] = str(val)
        return MappingProxyType(out)
    raise ValueError("must be a mapping or a 'k:v,k2:v2' string")


def _p_str_map(v: Any) -> Mapping[str, str]:
    if isinstance(v, str):
        # env form: "from1=to1,from2=to2"
        out: dict[str, str] = {}
        for item in v.split(","):
            if not item.strip():
                continue
            src, sep, dst = item.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise ValueError("must be 'from=to' pairs separated by commas")
            out[src.strip()] = dst.strip()
        return MappingProxyType(out)
    if isinstance(v, Mapping) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        return MappingProxyType(dict(v))
    raise ValueError("must be a mapping of str to str")


def _p_rules(v: Any) -> tuple[Any, ...]:
    from otel_dd_bridge.sampler import SamplingRule, parse_sampling_rules

    if isinstance(v, (list, tuple)) and all(isinstance(r, SamplingRule) for r in v):
        return tuple(v)
    try:
        return tuple(parse_sampling_rules(v))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration setting: its argument name, variables in precedence order, parser."""

    name: str
    env: tuple[str, ...]
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("mode", ("OTEL_DD_BRIDGE_MODE",), _p_choice("agent", "agentless"), "agent",
            "`agent`: send to a Datadog Agent. `agentless`: straight to the Datadog intake "
            "(`https://trace.agent.<site>`) with `api_key`; without a key, `mode=\"agentless\"` "
            "as an argument raises, from the environment it logs an error and uses `agent`."),
    Setting("agent_url", ("DD_TRACE_AGENT_URL",), _p_agent_url, None,
            "Agent URL: `http://host:port`, `https://...` or `unix:///path/to/apm.socket`. "
            "Unset: `DD_AGENT_HOST`/`DD_TRACE_AGENT_PORT` if given, else "
            f"`unix://{DEFAULT_UDS_PATH}` if that socket exists, else `{DEFAULT_AGENT_URL}`."),
    Setting("agent_host", ("DD_AGENT_HOST", "DD_TRACE_AGENT_HOSTNAME"), _p_opt_str, None,
            "Agent host, used when no agent URL is set (default `localhost`)."),
    Setting("agent_port", ("DD_TRACE_AGENT_PORT", "DD_AGENT_PORT"), _p_pos_int, None,
            "Agent port, used when no agent URL is set (default 8126)."),
    Setting("service", ("DD_SERVICE", "OTEL_SERVICE_NAME"), _p_opt_str, None,
            "Service name; overrides the resource's `service.name` (a span-level `service.name` "
            "attribute still wins). Unset: the resource's `service.name`."),
    Setting("env", ("DD_ENV",), _p_opt_str, None,
            "Environment; overrides the resource's `deployment.environment.name`. "
            "Unset: `env` from `DD_TAGS`, else the resource attributes."),
    Setting("version", ("DD_VERSION",), _p_opt_str, None,
            "Version; overrides the resource's `service.version`. Unset: `version` from `DD_TAGS`."),
    Setting("tags", ("DD_TAGS",), _p_tags, MappingProxyType({}),
            "Global tags `k:v,k2:v2` added to every span unless the span or resource has the key."),
    Setting("api_version", ("DD_TRACE_API_VERSION",), _p_api_version, "v0.4",
            "Agent API: `v0.4` (default: carries everything, cheapest CPU) or `v0.5` (string "
            "table: ~6x fewer bytes; falls back to v0.4 by itself on an Agent without it)."),
    Setting("timeout", ("DD_TRACE_AGENT_TIMEOUT_SECONDS",), _p_pos_float, 2.0,
            "Timeout of one HTTP request, seconds."),
    Setting("retry_timeout", ("OTEL_DD_BRIDGE_RETRY_TIMEOUT",), _p_pos_float, 10.0,
            "Deadline for delivering one batch, retries and backoff included, seconds."),
    Setting("shutdown_timeout", ("OTEL_DD_BRIDGE_SHUTDOWN_TIMEOUT",), _p_pos_float, 5.0,
            "Longest time `shutdown()` waits for an export in flight, seconds; also bounds the "
            "retries of the final flush at interpreter exit."),
    Setting("max_payload_size", ("OTEL_DD_BRIDGE_MAX_PAYLOAD_BYTES",), _p_pos_int, 10 * _MiB,
            "Largest request body, bytes; bigger batches are split, a single bigger trace is "
            "dropped and counted (the Agent rejects bodies over 25 MiB)."),
    Setting("top_level", ("OTEL_DD_BRIDGE_TOP_LEVEL",), _p_choice("by_kind", "classic"), "by_kind",
            "Service-entry spans: `by_kind` (SERVER/CONSUMER and roots top-level, CLIENT/PRODUCER "
            "measured; Datadog's recommendation for OTel) or `classic`."),
    Setting("error_tags_from_events", ("OTEL_DD_BRIDGE_ERROR_TAGS_FROM_EVENTS",), _p_bool, True,
            "Copy `exception` event fields to `error.msg`/`error.type`/`error.stack`."),
    Setting("span_name_as_resource_name", ("OTEL_DD_BRIDGE_SPAN_NAME_AS_RESOURCE_NAME",), _p_bool,
            False, "Legacy (V1) naming: use the OTel span name as the operation name."),
    Setting("span_name_remappings", ("OTEL_DD_BRIDGE_SPAN_NAME_REMAPPINGS",), _p_str_map,
            MappingProxyType({}), "Legacy (V1) naming: `from=to,...` operation-name remappings."),
    Setting("sampling_percentage", ("OTEL_DD_BRIDGE_SAMPLING_PERCENTAGE",), _p_percentage, 100.0,
            "Probabilistic sampling of traces without a user priority, percent (as the Agent's "
            "`otlp_config.traces.probabilistic_sampler`)."),
    Setting("sampling_rules", ("DD_TRACE_SAMPLING_RULES",), _p_rules, (),
            "Sampler: JSON list of `{sample_rate, service, name, resource, tags}` rules "
            "(`*`/`?` globs, first match wins)."),
    Setting("rate_limit", ("DD_TRACE_RATE_LIMIT",), _p_pos_float, 100.0,
            "Sampler: traces per second kept through matching rules."),
    Setting("api_key", ("DD_API_KEY",), _p_opt_str, None,
            "Datadog API key, required by agentless mode; never logged, never sent to an Agent.", secret=True),
    Setting("site", ("DD_SITE",), _p_site, "datadoghq.com",
            "Datadog site for agentless mode: `datadoghq.com`, `us3.datadoghq.com`, "
            "`us5.datadoghq.com`, `datadoghq.eu`, `ap1.datadoghq.com`, `ap2.datadoghq.com`, "
            "`uk1.datadoghq.com`, `ddog-gov.com`; another host name is used with a warning."),
    Setting("intake_url", ("OTEL_DD_BRIDGE_INTAKE_URL",), _p_intake_url, None,
            "Agentless: base URL of the intake, overriding `https://trace.agent.<site>` (a proxy, "
            "tests); `http://` only here. TLS is always verified."),
    Setting("intake_max_payload_size", ("OTEL_DD_BRIDGE_INTAKE_MAX_PAYLOAD_BYTES",), _p_pos_int,
            3_200_000,
            "Agentless: largest protobuf payload before gzip, bytes (the intake's limit is 3.2 MB); "
            "bigger batches are split, a single bigger trace is dropped and counted."),
    Setting("file_path", ("OTEL_DD_BRIDGE_FILE_PATH",), _p_str, "otel-dd-bridge-spans.jsonl",
            "File recorder (`DatadogFileExporter`, `OTEL_TRACES_EXPORTER=datadog_file`): the file "
            "the translated Datadog spans are appended to (relative: to the working directory)."),
    Setting("file_max_bytes", ("OTEL_DD_BRIDGE_FILE_MAX_BYTES",), _p_pos_int, 100 * _MiB,
            "File recorder: size at which the file is rotated to `PATH.1`, bytes."),
    Setting("file_backups", ("OTEL_DD_BRIDGE_FILE_BACKUPS",), _p_nonneg_int, 5,
            "File recorder: rotated files kept (`PATH.1` .. `PATH.N`); 0 keeps none."),
    Setting("file_format", ("OTEL_DD_BRIDGE_FILE_FORMAT",), _p_choice("jsonl", "yaml"), "jsonl",
            "File recorder: `jsonl` (one JSON object per line) or `yaml` (one document per span; "
            "needs the `yaml` extra)."),
    Setting("debug", ("OTEL_DD_BRIDGE_DEBUG", "DD_TRACE_DEBUG"), _p_bool, False,
            "Log every translated span at DEBUG on the `otel_dd_bridge.debug` logger."),
    Setting("drop_summary_interval", ("OTEL_DD_BRIDGE_DROP_SUMMARY_INTERVAL",), _p_pos_float, 60.0,
            "Seconds between two WARNING summary lines of dropped spans (counts by reason); "
            "logged only when something was dropped, and once more at `shutdown()`."),
    Setting("metrics", ("OTEL_DD_BRIDGE_METRICS",), _p_bool, False,
            "Expose the exporter's counters (`otel_dd_bridge.spans.*`) as OpenTelemetry observable "
            "counters through the global MeterProvider (or the `meter_provider=` argument)."),
    Setting("compute_stats", ("OTEL_DD_BRIDGE_COMPUTE_STATS", "DD_TRACE_STATS_COMPUTATION_ENABLED"),
            _p_bool, None,
            "Client-side APM stats (hits, errors, latency distributions per 10 s bucket), computed "
            "in-process and sent to the intake's `/api/v0.2/stats` (agentless) or the Agent's "
            "`/v0.6/stats` (trace requests then carry `Datadog-Client-Computed-Stats: true`). "
            "Unset: on in agentless mode, off in agent mode (the Agent computes them)."),
    Setting("stats_max_groups", ("OTEL_DD_BRIDGE_STATS_MAX_GROUPS",), _p_pos_int, 7000,
            "Client stats: distinct aggregation groups per 10 s bucket; spans of further groups "
            "are counted in one `tracer_blocked_value` overflow group."),
    Setting("stats_max_resources", ("OTEL_DD_BRIDGE_STATS_MAX_RESOURCES",), _p_pos_int, 1024,
            "Client stats: distinct resources per bucket; further ones become "
            "`tracer_blocked_value`."),
    Setting("stats_max_http_endpoints", ("OTEL_DD_BRIDGE_STATS_MAX_HTTP_ENDPOINTS",), _p_pos_int,
            512, "Client stats: distinct HTTP endpoints per bucket; further ones become "
            "`tracer_blocked_value`."),
    Setting("stats_max_peer_tags", ("OTEL_DD_BRIDGE_STATS_MAX_PEER_TAGS",), _p_pos_int, 512,
            "Client stats: distinct peer-tag sets per bucket; further ones become "
            "`tracer_blocked_value`."),
    Setting("obfuscation_cache_max_bytes", ("OTEL_DD_BRIDGE_OBFUSCATION_CACHE_MAX_BYTES",),
            _p_nonneg_int, 5_000_000,
            "Agentless obfuscation: approximate memory of each LRU cache of obfuscated SQL and "
            "Redis resources (a repeated statement then costs one look-up; the Agent's default "
            "`apm_config.obfuscation.cache.max_size`), bytes; 0 disables it."),
    Setting("obfuscate_all_statements", ("OTEL_DD_BRIDGE_OBFUSCATE_ALL_STATEMENTS",), _p_bool,
            True,
            "Agentless obfuscation: also strip values the Agent itself would leave: Memcached "
            "resources and `db.statement` / `db.query.text` keep only the command line before "
            "the first `\\r\\n` (stored data dropped), and Redis/Valkey `db.statement` / "
            "`db.query.text` hide values as `redis.raw_command` does (`SET k ?`). False: "
            "exactly the Agent's defaults."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    """The resolved configuration (immutable). ``sources`` says where each value came from."""

    mode: Mode
    agent: AgentEndpoint
    service: str | None
    env: str | None
    version: str | None
    tags: Mapping[str, str]
    api_version: ApiVersion
    timeout: float
    retry_timeout: float
    shutdown_timeout: float
    max_payload_size: int
    top_level: TopLevel
    error_tags_from_events: bool
    span_name_as_resource_name: bool
    span_name_remappings: Mapping[str, str]
    sampling_percentage: float
    sampling_rules: tuple[Any, ...]
    rate_limit: float
    api_key: str | None = field(repr=False)
    site: str
    debug: bool
    intake_url: str = ""  # resolved: the override, else https://trace.agent.<site>
    intake_max_payload_size: int = 3_200_000
    file_path: str = "otel-dd-bridge-spans.jsonl"
    file_max_bytes: int = 100 * _MiB
    file_backups: int = 5
    file_format: str = "jsonl"
    drop_summary_interval: float = 60.0
    metrics: bool = False
    compute_stats: bool | None = None
    stats_max_groups: int = 7000
    stats_max_resources: int = 1024
    stats_max_http_endpoints: int = 512
    stats_max_peer_tags: int = 512
    obfuscation_cache_max_bytes: int = 5_000_000
    obfuscate_all_statements: bool = True
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:  # the API key must never appear in a repr
        key = "<redacted>" if self.api_key else None
        return (
            f"ExporterConfig(mode={self.mode!r}, agent={self.agent.url!r}, "
            f"service={self.service!r}, env={self.env!r}, version={self.version!r}, "
            f"api_version={self.api_version!r}, api_key={key})"
        )


def _resolve_one(
    setting: Setting, explicit: dict[str, Any], environ: Mapping[str, str]
) -> tuple[Any, str]:
    if setting.name in explicit and explicit[setting.name] is not None:
        value = explicit[setting.name]
        try:
            return setting.parse(value), "argument"
        except ValueError as exc:
            shown = "<redacted>" if setting.secret else repr(value)
            raise ValueError(f"invalid {setting.name}={shown}: {exc}") from None
    for var in setting.env:
        raw = environ.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            return setting.parse(raw), var
        except ValueError as exc:
            shown = "<redacted>" if setting.secret else repr(raw)
            logger.warning("ignoring %s=%s: %s", var, shown, exc)
    return setting.default, "default"


def _resolve_agentless(values: dict[str, Any], sources: dict[str, str]) -> None:
    """The intake URL from the site, and the API key agentless mode cannot work without."""
    if values["intake_url"] is None:
        values["intake_url"] = f"https://trace.agent.{values['site']}"
        sources["intake_url"] = "default (site)"
    if values["mode"] != "agentless":
        return
    if values["site"] not in KNOWN_SITES and sources["intake_url"] == "default (site)":
        logger.warning(
            "site %r (from %s) is not a known Datadog site; sending to %s anyway",
            values["site"], sources["site"], values["intake_url"],
        )
    if not values["api_key"]:
        if sources["mode"] == "argument":
            raise ValueError(
                "invalid mode='agentless': an API key is required (api_key= or DD_API_KEY)"
            )
        logger.error(
            "%s=agentless needs a Datadog API key (DD_API_KEY); sending to the Agent instead",
            sources["mode"],
        )
        values["mode"] = "agent"
        sources["mode"] = "default (agentless without an API key)"


def resolve_config(
    environ: Mapping[str, str] | None = None,
    *,
    uds_exists: Callable[[str], bool] = os.path.exists,
    **explicit: Any,
) -> ExporterConfig:
    """Resolve every setting from explicit arguments, then the environment, then defaults.

    Args:
        environ: the environment to read (default ``os.environ``); tests pass a dict.
        uds_exists: predicate for the default socket path (injectable for tests).
        **explicit: constructor arguments; ``None`` means "not given".

    Raises:
        ValueError: an explicit argument is unknown or malformed (the message names it).
    """
    env = os.environ if environ is None else environ
    unknown = set(explicit) - set(_BY_NAME)
    if unknown:
        raise ValueError("unknown configuration argument(s): " + ", ".join(sorted(unknown)))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        values[setting.name], sources[setting.name] = _resolve_one(setting, explicit, env)

    # The agent endpoint: URL > host/port > default socket > default TCP.
    agent: AgentEndpoint | None = values.pop("agent_url")
    host, port = values.pop("agent_host"), values.pop("agent_port")
    if agent is None:
        if host is not None or port is not None:
            h = host or "localhost"
            if ":" in h and not h.startswith("["):
                h = f"[{h}]"
            agent = parse_agent_url(f"http://{h}:{port or 8126}")
            sources["agent_url"] = "+".join(
                s for s in (sources["agent_host"], sources["agent_port"]) if s != "default"
            )
        elif uds_exists(DEFAULT_UDS_PATH):
            agent = AgentEndpoint(url=f"unix://{DEFAULT_UDS_PATH}", uds_path=DEFAULT_UDS_PATH)
            sources["agent_url"] = "default (socket found)"
        else:
            agent = parse_agent_url(DEFAULT_AGENT_URL)
    del sources["agent_host"], sources["agent_port"]

    _resolve_agentless(values, sources)

    # env / version fall back to DD_TAGS entries, as in Datadog's tracers.
    tags: Mapping[str, str] = values["tags"]
    for key in ("env", "version", "service"):
        if values[key] is None and tags.get(key):
            values[key] = tags[key]
            sources[key] = sources["tags"]

    return ExporterConfig(agent=agent, sources=MappingProxyType(sources), **values)
