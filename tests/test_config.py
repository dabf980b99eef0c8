"""Configuration precedence, parsing and failure behaviour (config.py)."""

from __future__ import annotations

import logging

import pytest

from otel_dd_bridge.config import parse_agent_url, parse_dd_tags, resolve_config


def _cfg(env: dict[str, str] | None = None, uds: bool = False, **kw: object):
    return resolve_config(env or {}, uds_exists=lambda p: uds, **kw)


@pytest.mark.parametrize(
    ("case", "env", "kwargs", "setting", "expected", "source"),
    [
        ("default", {}, {}, "service", None, "default"),
        ("otel only", {"OTEL_SERVICE_NAME": "o"}, {}, "service", "o", "OTEL_SERVICE_NAME"),
        ("dd beats otel", {"OTEL_SERVICE_NAME": "o", "DD_SERVICE": "d"}, {}, "service", "d", "DD_SERVICE"),
        ("arg beats env", {"DD_SERVICE": "d", "OTEL_SERVICE_NAME": "o"}, {"service": "a"}, "service", "a", "argument"),
        ("empty env is unset", {"DD_SERVICE": " ", "OTEL_SERVICE_NAME": "o"}, {}, "service", "o", "OTEL_SERVICE_NAME"),
        ("env from DD_TAGS", {"DD_TAGS": "env:prod,team:x"}, {}, "env", "prod", "DD_TAGS"),
        ("DD_ENV beats DD_TAGS", {"DD_TAGS": "env:prod", "DD_ENV": "stg"}, {}, "env", "stg", "DD_ENV"),
        ("version", {"DD_VERSION": "1.2"}, {}, "version", "1.2", "DD_VERSION"),
        ("api default", {}, {}, "api_version", "v0.4", "default"),
        ("api env", {"DD_TRACE_API_VERSION": "v0.5"}, {}, "api_version", "v0.5", "DD_TRACE_API_VERSION"),
        ("api arg", {"DD_TRACE_API_VERSION": "v0.5"}, {"api_version": "v0.4"}, "api_version", "v0.4", "argument"),
        ("timeout env", {"DD_TRACE_AGENT_TIMEOUT_SECONDS": "0.5"}, {}, "timeout", 0.5, "DD_TRACE_AGENT_TIMEOUT_SECONDS"),
        ("zero timeout arg is not unset", {}, {"timeout": 3}, "timeout", 3.0, "argument"),
        ("payload limit", {"OTEL_DD_BRIDGE_MAX_PAYLOAD_BYTES": "1000"}, {}, "max_payload_size", 1000, "OTEL_DD_BRIDGE_MAX_PAYLOAD_BYTES"),
    ],
)
def test_precedence_table(case, env, kwargs, setting, expected, source) -> None:
    cfg = _cfg(env, **kwargs)
    assert getattr(cfg, setting) == expected, case
    assert cfg.sources[setting] == source, case


@pytest.mark.parametrize(
    ("env", "uds", "url"),
    [
        ({}, False, "http://localhost:8126"),
        ({}, True, "unix:///var/run/datadog/apm.socket"),
        ({"DD_AGENT_HOST": "agent"}, True, "http://agent:8126"),
        ({"DD_TRACE_AGENT_PORT": "9000"}, False, "http://localhost:9000"),
        ({"DD_AGENT_HOST": "::1", "DD_TRACE_AGENT_PORT": "9"}, False, "http://[::1]:9"),
        ({"DD_TRACE_AGENT_URL": "unix:///tmp/a.sock", "DD_AGENT_HOST": "x"}, False, "unix:///tmp/a.sock"),
        ({"DD_TRACE_AGENT_URL": "https://agent.example:8443/base/"}, False, "https://agent.example:8443/base"),
    ],
)
def test_agent_location(env, uds, url) -> None:
    assert _cfg(env, uds=uds).agent.url == url


def test_unix_url_gives_socket_path() -> None:
    ep = parse_agent_url("unix:///var/run/x.sock")
    assert ep.uds_path == "/var/run/x.sock"
    assert ep.http_base == "http://localhost"


@pytest.mark.parametrize(
    ("var", "value", "setting", "default"),
    [
        ("DD_TRACE_AGENT_URL", "ftp://nope", "agent", "http://localhost:8126"),
        ("DD_TRACE_API_VERSION", "v9", "api_version", "v0.4"),
        ("DD_TRACE_AGENT_TIMEOUT_SECONDS", "soon", "timeout", 2.0),
        ("DD_TRACE_AGENT_TIMEOUT_SECONDS", "-1", "timeout", 2.0),
        ("DD_TRACE_AGENT_TIMEOUT_SECONDS", "nan", "timeout", 2.0),
        ("DD_TRACE_AGENT_PORT", "eighty", "agent", "http://localhost:8126"),
        ("OTEL_DD_BRIDGE_MAX_PAYLOAD_BYTES", "1e3", "max_payload_size", 10 * 1024 * 1024),
        ("OTEL_DD_BRIDGE_TOP_LEVEL", "sometimes", "top_level", "by_kind"),
    ],
)
def test_malformed_env_warns_and_defaults(caplog, var, value, setting, default) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_dd_bridge.config"):
        cfg = _cfg({var: value})
    got = getattr(cfg, setting)
    assert (got.url if setting == "agent" else got) == default
    assert any(var in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"agent_url": "ftp://x"}, "agent_url"),
        ({"agent_url": "unix://relative.sock"}, "agent_url"),
        ({"api_version": "v0.3"}, "api_version"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "fast"}, "timeout"),
        ({"tags": 5}, "tags"),
        ({"max_payload_size": -1}, "max_payload_size"),
    ],
)
def test_malformed_argument_raises_naming_it(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        _cfg(**kwargs)


def test_unknown_argument_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        _cfg(bogus=1)


def test_api_key_never_in_repr_or_warning(caplog) -> None:
    cfg = _cfg({"DD_API_KEY": "0123456789abcdef0123456789abcdef"})
    assert "0123456789abcdef" not in repr(cfg)
    with pytest.raises(ValueError) as exc:
        _cfg(api_key=12345)
    assert "12345" not in str(exc.value)


def test_dd_tags_parsing() -> None:
    assert parse_dd_tags("a:1,b:2, c") == {"a": "1", "b": "2", "c": ""}
    assert parse_dd_tags("a:1 b:x:y") == {"a": "1", "b": "x:y"}


def test_exporter_constructs_with_no_arguments_and_bad_env() -> None:
    from otel_dd_bridge import DatadogSpanExporter

    exp = DatadogSpanExporter(_environ={"DD_TRACE_AGENT_URL": "::::", "DD_TRACE_API_VERSION": "x"})
    assert exp.config.api_version == "v0.4"
    exp.shutdown()
    with pytest.raises(ValueError, match="api_version"):
        DatadogSpanExporter(api_version="v7")


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    from otel_dd_bridge.config import SETTINGS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for s in SETTINGS:
        assert f"`{s.name}`" in readme, s.name
        for var in s.env:
            assert f"`{var}`" in readme, var
