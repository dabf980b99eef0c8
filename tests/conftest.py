"""Shared fixtures: the real Datadog test agent, and a clean environment for every test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.harness.testagent import TestAgent

_KEEP = ("OTEL_DD_BRIDGE_TEST_AGENT_VENV", "OTEL_DD_BRIDGE_DDTRACE_VENV",
         "OTEL_DD_BRIDGE_MINIAGENT_VENV")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("DD_", "OTEL_")) and key not in _KEEP:
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def test_agent() -> Iterator[TestAgent]:
    agent = TestAgent().start()
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def test_agent_uds() -> Iterator[TestAgent]:
    with tempfile.TemporaryDirectory(prefix="dd-uds-") as d:
        agent = TestAgent(uds_path=os.path.join(d, "apm.socket")).start()
        yield agent
        agent.stop()


@pytest.fixture
def agent(test_agent: TestAgent) -> TestAgent:
    test_agent.clear()
    return test_agent
