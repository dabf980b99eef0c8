"""Transport hygiene: suppressed instrumentation, filtered httpx logs, one attempt, no raise."""

from __future__ import annotations

import logging

import httpx
from opentelemetry import context as otel_context

from otel_dd_bridge.config import parse_agent_url
from otel_dd_bridge.transport import HttpTransport, agent_headers


def test_requests_run_with_instrumentation_suppressed() -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
        seen.append(otel_context.get_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY))
        return httpx.Response(200, content=b"{}")

    t = HttpTransport(parse_agent_url("http://127.0.0.1:1"), timeout=1,
                      _transport=httpx.MockTransport(handler))
    assert t.send("PUT", "/v0.4/traces", b"\x90", {}).ok
    assert seen == [True, True]
    assert otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY) is None
    t.close()


def test_own_httpx_info_logs_are_filtered(caplog) -> None:
    t = HttpTransport(parse_agent_url("http://127.0.0.1:1"), timeout=1,
                      _transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with caplog.at_level(logging.INFO, logger="httpx"):
        t.send("PUT", "/v0.4/traces", b"", {})
        logging.getLogger("httpx").info("a user's own httpx line")
    msgs = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert msgs == ["a user's own httpx line"]
    t.close()


def test_send_never_raises() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("broken transport")

    t = HttpTransport(parse_agent_url("http://127.0.0.1:1"), timeout=1,
                      _transport=httpx.MockTransport(boom))
    r = t.send("PUT", "/x", b"", {})
    assert r.status == 0 and "broken transport" in (r.error or "")
    t.close()
    assert t.send("PUT", "/x", b"", {}).error == "transport closed"


def test_headers() -> None:
    h = agent_headers(computed_stats=True)
    assert h["Datadog-Meta-Lang"] == "python"
    assert h["Datadog-Client-Computed-Stats"] == "true"
    assert h["User-Agent"].startswith("otel-dd-bridge/")


def test_own_httpcore_debug_logs_are_filtered_on_child_loggers(caplog) -> None:
    """httpcore logs on child loggers (httpcore.http11, .connection): ours are filtered there too."""
    from tests.faultserver import FaultServer, Reply

    with FaultServer(lambda i, seen: Reply()) as srv:
        t = HttpTransport(parse_agent_url(srv.url), timeout=2)
        with caplog.at_level(logging.DEBUG, logger="httpcore"):
            assert t.send("PUT", "/v0.4/traces", b"\x90", {}).ok
            logging.getLogger("httpcore.http11").debug("a user's own httpcore line")
        t.close()
    msgs = [r.getMessage() for r in caplog.records if r.name.startswith("httpcore")]
    assert msgs == ["a user's own httpcore line"]


def test_request_on_the_wire_base_path_and_headers() -> None:
    """What a request looks like to a real HTTP server: the URL's base path joined to the
    route, Host and Content-Length set, the constant headers merged under the per-request ones."""
    from tests.faultserver import FaultServer, Reply

    with FaultServer(lambda i, seen: Reply(body=b'{"rate_by_service":{}}')) as srv:
        t = HttpTransport(parse_agent_url(srv.url + "/base/"), timeout=2,
                          headers={**agent_headers(), "X-Shared": "a"})
        r = t.send("PUT", "/v0.4/traces", b"\x90", {"X-Shared": "b", "Content-Type": "x/y"})
        assert r.ok and r.body == b'{"rate_by_service":{}}'
        assert t.send("GET", "/info", None, {}).ok
        t.close()
    put, get = srv.requests
    assert (put.method, put.path, put.body) == ("PUT", "/base/v0.4/traces", b"\x90")
    h = put.headers
    assert h["host"] == srv.url.split("//", 1)[1] and h["content-length"] == "1"
    assert h["x-shared"] == "b" and h["content-type"] == "x/y"
    assert h["datadog-meta-lang"] == "python" and h["user-agent"].startswith("otel-dd-bridge/")
    assert (get.method, get.path) == ("GET", "/base/info") and "x-shared" in get.headers
