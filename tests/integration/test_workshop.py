"""The workshop app (examples/workshop) end to end, started exactly as its README says.

``start.sh`` runs ``taster`` and ``matchmaker`` under ``opentelemetry-instrument`` with
``OTEL_TRACES_EXPORTER=datadog`` and the datadog propagator, against a real PostgreSQL and a
real redis-server started by the test, and the spans are read back from the real test agent.
Checked: one trace per request across both services (one trace id, correct parentage), the
SQL resource without literal values, and the failing route's error fields.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.servers import PostgresServer, RedisServer, free_port
from tests.harness.testagent import TestAgent

REPO = Path(__file__).resolve().parents[2]
START = REPO / "examples" / "workshop" / "start.sh"
Span = dict[str, Any]
SERVICES = {"matchmaker", "taster"}


@pytest.fixture(scope="module")
def backing() -> Iterator[tuple[PostgresServer, RedisServer]]:
    pg = PostgresServer().start()
    rd = RedisServer()
    try:
        rd.start()
        yield pg, rd
    finally:
        rd.stop()
        pg.stop()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Workshop:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, mm: int, taster: int) -> None:
        self.proc, self.log = proc, log
        self.matchmaker = f"http://127.0.0.1:{mm}"
        self.taster = f"http://127.0.0.1:{taster}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        for url in (f"{self.taster}/taste?style=ipa", f"{self.matchmaker}/beers"):
            while True:
                try:
                    if _get(url)[0] == 200:
                        break
                except OSError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the workshop did not come up:\n{self.output()}")
                time.sleep(0.2)


@pytest.fixture(scope="module")
def workshop(test_agent: TestAgent, backing: tuple[PostgresServer, RedisServer],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workshop]:
    pg, rd = backing
    mm_port, taster_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DD_TRACE_AGENT_URL=test_agent.url, OTEL_BSP_SCHEDULE_DELAY="100",
        DATABASE_URL=pg.sqlalchemy_url, REDIS_URL=rd.url,
        MATCHMAKER_PORT=str(mm_port), TASTER_PORT=str(taster_port),
    )
    log = tmp_path_factory.mktemp("workshop") / "workshop.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(START)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    ws = Workshop(proc, log, mm_port, taster_port)
    try:
        ws.wait_ready()
        yield ws
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # our own process group: start.sh + services
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _traces_by_root(agent: TestAgent, roots: set[str], timeout: float = 20.0
                    ) -> dict[str, list[Span]]:
    """Spans grouped by trace id, keyed by the root span's resource, once every root in
    ``roots`` has arrived and the span count stopped growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        spans = [s for t in agent.traces() for s in t if s["service"] in SERVICES]
        by_trace: dict[int, list[Span]] = defaultdict(list)
        for s in spans:
            by_trace[s["trace_id"]].append(s)
        out = {}
        for trace in by_trace.values():
            for s in trace:
                if s["parent_id"] == 0:
                    out[s["resource"]] = trace
        if roots <= set(out) and len(spans) == last:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"missing traces {roots - set(out)}; got {sorted(out)}")
        last = len(spans)
        time.sleep(0.4)


def _quiesce(agent: TestAgent, timeout: float = 10.0) -> None:
    """Wait until no new spans arrived for 0.5 s (the services flush every 100 ms)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        n = sum(len(t) for t in agent.traces())
        if n == last:
            return
        last = n
        time.sleep(0.5)


def test_workshop_traces(workshop: Workshop, test_agent: TestAgent) -> None:
    _quiesce(test_agent)  # let the start-up spans (seeding, readiness probes) arrive, drop them
    test_agent.clear()
    assert _get(f"{workshop.matchmaker}/pair/beer?name=midnight-stout") == (
        200, b'{"beer":"midnight-stout","donut":"maple-bacon","flavour":"roasty"}\n')
    assert _get(f"{workshop.matchmaker}/beers/dragonfly-ipa")[0] == 200
    assert _get(f"{workshop.matchmaker}/donuts/lemon-curd")[0] == 200
    assert _get(f"{workshop.matchmaker}/fryer")[0] == 500
    traces = _traces_by_root(test_agent, {"GET /pair/beer", "GET /beers/<name>",
                                          "GET /donuts/<name>", "GET /fryer"})
    assert len(traces) == 4, sorted(traces)

    # -- /pair/beer: one trace across matchmaker and taster ------------------------------------
    pair = traces["GET /pair/beer"]
    assert len({s["trace_id"] for s in pair}) == 1
    assert {s["service"] for s in pair} == {"matchmaker", "taster"}
    by_id = {s["span_id"]: s for s in pair}
    [root] = [s for s in pair if s["parent_id"] == 0]
    assert root["service"] == "matchmaker" and root["name"] == "http.server.request"
    assert root["type"] == "web" and root["meta"]["http.route"] == "/pair/beer"
    assert root["meta"]["env"] == "workshop" and root["meta"]["version"] == "1.0"
    assert all(s["parent_id"] in by_id for s in pair if s is not root), "orphan span"

    # SQLAlchemy also traces pool checkouts that open a connection (resource "connect")
    sqls = [s for s in pair if s["type"] == "sql" and s["resource"] != "connect"]
    assert all(s["name"] == "postgresql.query" for s in pair if s["type"] == "sql")
    [sql] = sqls
    assert sql["service"] == "matchmaker" and sql["name"] == "postgresql.query"
    assert sql["parent_id"] == root["span_id"] and sql["meta"]["db.system"] == "postgresql"
    # the bound name is a parameter: no literal in the resource (the Agent obfuscates the rest)
    assert sql["resource"].startswith("SELECT beers.name") and "FROM beers" in sql["resource"]
    assert "midnight-stout" not in sql["resource"]
    assert sql["resource"] == sql["meta"]["db.statement"]

    [client] = [s for s in pair if s["name"] == "http.client.request"]
    assert client["service"] == "matchmaker" and client["parent_id"] == root["span_id"]
    assert client["resource"] == "GET" and client["type"] == "http"
    assert client["meta"]["http.url"].startswith(f"{workshop.taster}/taste?")

    [taste] = [s for s in pair if s["service"] == "taster"]
    assert taste["parent_id"] == client["span_id"], "taster must continue the client span"
    assert taste["name"] == "http.server.request" and taste["resource"] == "GET /taste"
    assert taste["type"] == "web" and taste["metrics"]["_top_level"] == 1

    cache = [s for s in pair if s["type"] == "redis"]
    assert cache and all(s["parent_id"] == root["span_id"] for s in cache)
    assert {s["resource"].split()[0] for s in cache} == {"SMEMBERS", "HGET"}
    assert all(s["name"] == "redis.query" and "donut:" not in s["resource"] for s in cache)

    # -- single-service traces ------------------------------------------------------------------
    beer = traces["GET /beers/<name>"]
    assert {s["type"] for s in beer} == {"web", "sql"} and len({s["trace_id"] for s in beer}) == 1
    donut = traces["GET /donuts/<name>"]
    assert {s["type"] for s in donut} == {"web", "redis"}
    assert [s["resource"] for s in donut if s["type"] == "redis"] == ["HGETALL ?"]

    # -- the failing route ----------------------------------------------------------------------
    [fail] = [s for s in traces["GET /fryer"] if s["parent_id"] == 0]
    assert fail["error"] == 1 and fail["metrics"]["http.status_code"] == 500
    assert fail["meta"]["error.type"] == "RuntimeError"
    assert fail["meta"]["error.msg"] == "the donut fryer caught fire"
    assert "Traceback (most recent call last)" in fail["meta"]["error.stack"]
    assert 'raise RuntimeError("the donut fryer caught fire")' in fail["meta"]["error.stack"]


def test_traffic_script(workshop: Workshop) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "workshop" / "traffic.py"),
         "--url", workshop.matchmaker, "--rounds", "1", "--pause", "0"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 8, out
    assert "round 1: 500 GET /fryer" in lines and "round 1: 404 GET /beers/no-such-beer" in lines
    assert sum(" 200 GET " in line for line in lines) == 6
