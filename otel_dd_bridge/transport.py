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


class HttpTransport:
    """One httpx client per exporter: keep-alive, TLS verification on, optional Unix socket."""

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
        self._client_args = (timeout, dict(headers or {}), verify, _transport)
        self._client = self._make_client()
        self._closed = False
        # A forked child must never reuse the parent's pooled connections (two processes
        # writing onto one socket): it gets a fresh client (see otel_dd_bridge._lifecycle).
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _make_client(self) -> httpx.Client:
        timeout, headers, verify, transport = self._client_args
        if transport is None and self.endpoint.uds_path:
            transport = httpx.HTTPTransport(uds=self.endpoint.uds_path)
        return httpx.Client(
            base_url=self.endpoint.http_base,
            timeout=httpx.Timeout(timeout),
            headers=headers,
            transport=transport,
            verify=verify,
            trust_env=False,  # never route to a proxy the user did not configure for us
            follow_redirects=False,
        )

    def _after_fork_in_child(self) -> None:
        # The inherited client is abandoned, not closed: closing would shut down sockets (and
        # TLS sessions) the parent is still using. An injected test transport is kept as is.
        if not self._closed:
            self._client = self._make_client()

    def send(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> SendResult:
        """Make one request; never raises."""
        if self._closed:
            return SendResult(status=0, error="transport closed")
        try:
            with suppressed_instrumentation():
                resp = self._client.request(method, path, content=body, headers=dict(headers))
            return SendResult(status=resp.status_code, body=resp.content, headers=resp.headers)
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
                self._client.close()
            except Exception:  # noqa: BLE001
                logger.debug("error closing the HTTP client", exc_info=True)
