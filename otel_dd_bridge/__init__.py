"""otel-dd-bridge: OpenTelemetry spans to Datadog APM, shaped as the Datadog Agent would.

Public surface only; everything else is private to the package.
"""

# First: applies OTEL_DD_BRIDGE_NO_EXTENSIONS (pure Python) before any compiled module loads.
from otel_dd_bridge import _accel  # noqa: F401  # isort: skip
from otel_dd_bridge.config import ExporterConfig, resolve_config
from otel_dd_bridge.exporter import DatadogSpanExporter
from otel_dd_bridge.model import DDSpan, PayloadInfo, TraceChunk
from otel_dd_bridge.processor import DatadogBatchSpanProcessor
from otel_dd_bridge.propagator import DatadogPropagator
from otel_dd_bridge.sampler import DatadogSampler
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from otel_dd_bridge.version import __version__

__all__ = [
    "DDSpan",
    "DatadogBatchSpanProcessor",
    "DatadogPropagator",
    "DatadogSampler",
    "DatadogSpanExporter",
    "ExporterConfig",
    "PayloadInfo",
    "TraceChunk",
    "TranslateOptions",
    "__version__",
    "resolve_config",
    "translate_spans",
]
