"""The public surface is deliberate: pin it."""

import otel_dd_bridge


def test_public_names() -> None:
    assert sorted(otel_dd_bridge.__all__) == sorted([
        "DDSpan", "DatadogBatchSpanProcessor", "DatadogPropagator", "DatadogSampler",
        "DatadogSpanExporter", "ExporterConfig", "PayloadInfo", "TraceChunk", "TranslateOptions", "__version__", "resolve_config",
        "translate_spans",
    ])
    for name in otel_dd_bridge.__all__:
        assert hasattr(otel_dd_bridge, name)


def test_exporter_entry_point() -> None:
    from importlib.metadata import entry_points

    [ep] = entry_points(group="opentelemetry_traces_exporter", name="datadog")
    assert ep.load() is otel_dd_bridge.DatadogSpanExporter
