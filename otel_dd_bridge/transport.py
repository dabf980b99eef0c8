"""HTTP transport to the Agent (TCP, TLS or a Unix socket) on httpx.

The transport knows bytes and headers, never spans. :meth:`HttpTransport.send` makes exactly
one attempt and returns a :class:`SendResult`; it never raises. Retries live in
:mod:`otel_dd_bridge.retry`.

Hygiene inside an instrumented process:

* every request runs with OpenTelemetry's suppress-instrumentation context keys set, so an
  auto-instrumented httpx does not trace the exporter's own requests;
* httpx logs each request at INFO on the ``httpx`` logger; a filter drops the records of our
  own requests (and only those) instead of changing the user's logging levels.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from opentelemetry import context as otel_context

from otel_dd_bridge import _lifecycle
from otel_dd_bridge.config import AgentEndpoint
from otel_dd_bridge.version import __version__

logger = logging.getLogger(__name__)

__all__ = ["HttpTransport", "SendResult", "agent_headers", "suppressed_instrumentation"]

_SUPPRESS_KEYS = tuple(
    key
    for key in (
        getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None),
        getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None),
    )
    if key is not None
)

_in_own_request = threading.local()


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """Run the block with OTel instrumentation suppressed and our httpx logs filtered."""
    ctx = otel_context.get_current()
    for key in _SUPPRESS_KEYS:
        ctx = otel_context.set_value(key, True, ctx)
    token = otel_context.attach(ctx)
    _in_own_request.active = True
    try:
        yield
    finally:
        _in_own_request.active = False
        otel_context.detach(token)


class _OwnRequestFilter(logging.Filter):
    """Drops httpx/httpcore records emitted while the exporter itself is sending."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_in_own_request, "active", False)


_FILTER = _OwnRequestFilter()
# Logger filters are not inherited: httpcore logs on its child loggers, so each gets the filter.
_FILTERED_LOGGERS = (
    "httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
    "httpcore.proxy", "httpcore.socks",
)
for _name in _FILTERED_LOGGERS:
    _lg = logging.getLogger(_name)
    if _FILTER not in _lg.filters:
        _lg.addFilter(_FILTER)


def agent_headers(*, computed_stats: bool = False) -> dict[str, str]:
    """The constant request headers of the Agent trace API (wire.md §1.5)."""
    headers = {
        "Datadog-Meta-Lang": "python",
        "Datadog-Meta-Lang-Version": platform.python_version(),
        "Datadog-Meta-Lang-Interpreter": platform.python_implementation(),
        "Datadog-Meta-Tracer-Version": __version__,
        # We compute _top_level/_dd.measured ourselves (translation §7.3); without this header
        # the Agent would recompute top-level with its classic rule.
        "Datadog-Client-Computed-Top-Level": "true",
        # With it an overloaded Agent answers 429 instead of a silent 200 that drops the payload.
        "Datadog-Send-Real-Http-Status": "1",
        "User-Agent": f"otel-dd-bridge/{__version__}",
    }
    if computed_stats:
        headers["Datadog-Client-Computed-Stats"] = "true"
    return headers


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one HTTP attempt: a status (0 when no response) or an error."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # connection error / timeout description when status == 0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# What httpx.Client would add (it also asks for compressed answers; ours are a few bytes).
_DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive"}
_MAX_CACHED_URLS = 32  # distinct request paths whose parsed URL is kept


class HttpTransport:
    """One httpx transport (connection pool) per exporter: keep-alive, TLS verification on,
    optional Unix socket.

    Requests go straight to ``httpx.HTTPTransport.handle_request``: an ``httpx.Client`` adds
    nothing we use (no cookies, auth, redirects or proxies here) and costs ~250 us of CPU per
    request on this kind of machine, about half a microsecond per span of a 512-span batch.
    """

    def __init__(
        self,
        endpoint: AgentEndpoint,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        verify: bool = True,
        _transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._verify, self._injected = verify, _transport
        self._base = endpoint.http_base.rstrip("/")
        # Parsed once: the URL of each path (a handful: traces, stats, info) and the constant
        # headers; httpx re-parses and re-normalizes strings on every request otherwise.
        self._urls: dict[str, httpx.URL] = {}
        self._headers = httpx.Headers({**_DEFAULT_HEADERS, **(headers or {})})
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._http = self._make_transport()
        self._closed = False
        # A forked child must never reuse the parent's pooled connections (two processes
        # writing onto one socket): it gets a fresh pool (see otel_dd_bridge._lifecycle).
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _make_transport(self) -> httpx.BaseTransport:
        transport = self._injected
        if transport is None:
            # trust_env=False: never route to a proxy, or read certificates, the user did not
            # configure for us. retries=0: retrying is retry.py's job.
            transport = httpx.HTTPTransport(
                verify=self._verify, uds=self.endpoint.uds_path or None, trust_env=False
            )
        return transport

    def _after_fork_in_child(self) -> None:
        # The inherited pool is abandoned, not closed: closing would shut down sockets (and
        # TLS sessions) the parent is still using. An injected test transport is kept as is.
        if not self._closed:
            self._http = self._make_transport()

    def send(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> SendResult:
        """Make one request; never raises."""
        if self._closed:
            return SendResult(status=0, error="transport closed")
        try:
            url = self._urls.get(path)
            if url is None:
                url = httpx.URL(self._base + path)
                if len(self._urls) < _MAX_CACHED_URLS:
                    self._urls[path] = url
            hdrs = self._headers
            if headers:
                hdrs = httpx.Headers(hdrs)
                hdrs.update(headers)
            request = httpx.Request(method, url, content=body, headers=hdrs,
                                    extensions={"timeout": self._timeout})
            with suppressed_instrumentation():
                resp = self._http.handle_request(request)
                try:
                    content = resp.read()
                finally:
                    resp.close()
            return SendResult(status=resp.status_code, body=content, headers=resp.headers)
        except httpx.TimeoutException as exc:
            return SendResult(status=0, error=f"timeout: {type(exc).__name__}", timed_out=True)
        except (httpx.HTTPError, OSError) as exc:
            return SendResult(status=0, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the host application must never see it
            return SendResult(status=0, error=f"unexpected {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                self._http.close()
            except Exception:  # noqa: BLE001
                logger.debug("error closing the HTTP client", exc_info=True)
