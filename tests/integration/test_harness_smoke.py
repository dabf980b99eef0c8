"""Smoke test of the test-agent harness itself: a hand-built v0.4 msgpack payload round-trips
through the real ``ddapm-test-agent`` over TCP and over its Unix socket."""

from __future__ import annotations

import http.client
import json

import msgpack
import pytest

from tests.harness.testagent import TestAgent, UDSConnection

TRACE_ID = 0x1234_5678_9ABC_DEF0  # < 2**63, fits the v0.4 uint64 without sign trouble
ROOT_ID = 0x1111
CHILD_ID = 0x2222


def _payload() -> bytes:
    start = 1_700_000_000_000_000_000
    common = {"trace_id": TRACE_ID, "service": "smoke-svc", "type": "web", "error": 0}
    root = {**common, "span_id": ROOT_ID, "parent_id": 0, "name": "http.request", "resource": "GET /",
            "start": start, "duration": 5_000_000,
            "meta": {"http.method": "GET", "span.kind": "server"},
            "metrics": {"_sampling_priority_v1": 1, "_dd.top_level": 1}}
    child = {**common, "span_id": CHILD_ID, "parent_id": ROOT_ID, "name": "db.query",
             "resource": "SELECT 1", "type": "sql", "start": start + 1_000_000, "duration": 2_000_000,
             "error": 1, "meta": {"error.message": "boom"}, "metrics": {"rows": 3.5}}
    return msgpack.packb([[root, child]])


def _headers(body: bytes, count: str = "1") -> dict[str, str]:
    return {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": count,
            "Datadog-Meta-Tracer-Version": "0.0.1", "Datadog-Meta-Lang": "python",
            "Content-Length": str(len(body))}


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        conn.request("PUT", "/v0.4/traces", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _check(traces: list[list[dict]]) -> None:
    assert len(traces) == 1
    spans = {s["span_id"]: s for s in traces[0]}
    assert set(spans) == {ROOT_ID, CHILD_ID}
    root, child = spans[ROOT_ID], spans[CHILD_ID]
    assert isinstance(root["trace_id"], int) and root["trace_id"] == TRACE_ID
    assert root["parent_id"] == 0 and child["parent_id"] == ROOT_ID
    assert (root["service"], root["name"], root["resource"], root["type"]) == \
        ("smoke-svc", "http.request", "GET /", "web")
    assert child["error"] == 1 and child["meta"]["error.message"] == "boom"
    assert root["meta"]["http.method"] == "GET"
    assert root["metrics"]["_sampling_priority_v1"] == 1
    assert child["metrics"]["rows"] == 3.5
    assert child["duration"] == 2_000_000


def test_tcp_roundtrip(agent: TestAgent) -> None:
    body = _payload()
    status, resp = _post(http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5), body, _headers(body))
    assert status == 200, resp
    assert "rate_by_service" in json.loads(resp)
    _check(agent.wait_for_traces(1))
    reqs = [r for r in agent.requests() if "/v0.4/traces" in r["url"]]
    assert len(reqs) == 1 and reqs[0]["headers"]["X-Datadog-Trace-Count"] == "1"


def test_uds_roundtrip(test_agent_uds: TestAgent) -> None:
    test_agent_uds.clear()
    assert test_agent_uds.uds_path
    body = _payload()
    status, resp = _post(UDSConnection(test_agent_uds.uds_path), body, _headers(body))
    assert status == 200, resp
    _check(test_agent_uds.wait_for_traces(1))


def test_failed_check_is_400(agent: TestAgent) -> None:
    body = _payload()
    status, resp = _post(http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5),
                         body, _headers(body, count="2"))
    assert status == 400
    assert b"trace_count_header" in resp or b"X-Datadog-Trace-Count" in resp, resp


def test_session_rates(agent: TestAgent) -> None:
    rates = {"service:smoke-svc,env:": 0.25}
    agent.start_session("tok-1", rates)
    try:
        body = _payload()
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
        status, resp = _post(conn, body, {**_headers(body), "X-Datadog-Test-Session-Token": "tok-1"})
        assert status == 200, resp
        assert json.loads(resp)["rate_by_service"] == rates
        assert len(agent.wait_for_traces(1, token="tok-1")) == 1
    finally:
        agent.clear("tok-1")


def test_missing_venv_is_an_error(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="ddapm-test-agent not found"):
        TestAgent(venv=str(tmp_path / "nope")).start()
