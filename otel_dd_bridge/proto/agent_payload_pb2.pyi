from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentPayload(_message.Message):
    __slots__ = ("hostName", "env", "tracerPayloads", "tags", "agentVersion", "targetTPS", "errorTPS", "rareSamplerEnabled")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TRACERPAYLOADS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AGENTVERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETTPS_FIELD_NUMBER: _ClassVar[int]
    ERRORTPS_FIELD_NUMBER: _ClassVar[int]
    RARESAMPLERENABLED_FIELD_NUMBER: _ClassVar[int]
    hostName: str
    env: str
    tracerPayloads: _containers.RepeatedCompositeFieldContainer[TracerPayload]
    tags: _containers.ScalarMap[str, str]
    agentVersion: str
    targetTPS: float
    errorTPS: float
    rareSamplerEnabled: bool
    def __init__(self, hostName: _Optional[str] = ..., env: _Optional[str] = ..., tracerPayloads: _Optional[_Iterable[_Union[TracerPayload, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., agentVersion: _Optional[str] = ..., targetTPS: _Optional[float] = ..., errorTPS: _Optional[float] = ..., rareSamplerEnabled: bool = ...) -> None: ...

class TracerPayload(_message.Message):
    __slots__ = ("containerID", "languageName", "languageVersion", "tracerVersion", "runtimeID", "chunks", "tags", "env", "hostname", "appVersion", "containerDebug")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTAINERID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGENAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGEVERSION_FIELD_NUMBER: _ClassVar[int]
    TRACERVERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIMEID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    APPVERSION_FIELD_NUMBER: _ClassVar[int]
    CONTAINERDEBUG_FIELD_NUMBER: _ClassVar[int]
    containerID: str
    languageName: str
    languageVersion: str
    tracerVersion: str
    runtimeID: str
    chunks: _containers.RepeatedCompositeFieldContainer[TraceChunk]
    tags: _containers.ScalarMap[str, str]
    env: str
    hostname: str
    appVersion: str
    containerDebug: ContainerDebug
    def __init__(self, containerID: _Optional[str] = ..., languageName: _Optional[str] = ..., languageVersion: _Optional[str] = ..., tracerVersion: _Optional[str] = ..., runtimeID: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[TraceChunk, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., env: _Optional[str] = ..., hostname: _Optional[str] = ..., appVersion: _Optional[str] = ..., containerDebug: _Optional[_Union[ContainerDebug, _Mapping]] = ...) -> None: ...

class ContainerDebug(_message.Message):
    __slots__ = ("error", "latencyMs", "wasBuffered", "bufferMs", "bufferEvictionReason")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCYMS_FIELD_NUMBER: _ClassVar[int]
    WASBUFFERED_FIELD_NUMBER: _ClassVar[int]
    BUFFERMS_FIELD_NUMBER: _ClassVar[int]
    BUFFEREVICTIONREASON_FIELD_NUMBER: _ClassVar[int]
    error: str
    latencyMs: int
    wasBuffered: bool
    bufferMs: int
    bufferEvictionReason: str
    def __init__(self, error: _Optional[str] = ..., latencyMs: _Optional[int] = ..., wasBuffered: bool = ..., bufferMs: _Optional[int] = ..., bufferEvictionReason: _Optional[str] = ...) -> None: ...

class TraceChunk(_message.Message):
    __slots__ = ("priority", "origin", "spans", "tags", "droppedTrace")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DROPPEDTRACE_FIELD_NUMBER: _ClassVar[int]
    priority: int
    origin: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    tags: _containers.ScalarMap[str, str]
    droppedTrace: bool
    def __init__(self, priority: _Optional[int] = ..., origin: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., droppedTrace: bool = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("service", "name", "resource", "traceID", "spanID", "parentID", "start", "duration", "error", "meta", "metrics", "type", "meta_struct", "spanLinks", "spanEvents")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetaStructEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    TRACEID_FIELD_NUMBER: _ClassVar[int]
    SPANID_FIELD_NUMBER: _ClassVar[int]
    PARENTID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    META_STRUCT_FIELD_NUMBER: _ClassVar[int]
    SPANLINKS_FIELD_NUMBER: _ClassVar[int]
    SPANEVENTS_FIELD_NUMBER: _ClassVar[int]
    service: str
    name: str
    resource: str
    traceID: int
    spanID: int
    parentID: int
    start: int
    duration: int
    error: int
    meta: _containers.ScalarMap[str, str]
    metrics: _containers.ScalarMap[str, float]
    type: str
    meta_struct: _containers.ScalarMap[str, bytes]
    spanLinks: _containers.RepeatedCompositeFieldContainer[SpanLink]
    spanEvents: _containers.RepeatedCompositeFieldContainer[SpanEvent]
    def __init__(self, service: _Optional[str] = ..., name: _Optional[str] = ..., resource: _Optional[str] = ..., traceID: _Optional[int] = ..., spanID: _Optional[int] = ..., parentID: _Optional[int] = ..., start: _Optional[int] = ..., duration: _Optional[int] = ..., error: _Optional[int] = ..., meta: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., type: _Optional[str] = ..., meta_struct: _Optional[_Mapping[str, bytes]] = ..., spanLinks: _Optional[_Iterable[_Union[SpanLink, _Mapping]]] = ..., spanEvents: _Optional[_Iterable[_Union[SpanEvent, _Mapping]]] = ...) -> None: ...

class SpanLink(_message.Message):
    __slots__ = ("traceID", "traceID_high", "spanID", "attributes", "tracestate", "flags")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRACEID_FIELD_NUMBER: _ClassVar[int]
    TRACEID_HIGH_FIELD_NUMBER: _ClassVar[int]
    SPANID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    traceID: int
    traceID_high: int
    spanID: int
    attributes: _containers.ScalarMap[str, str]
    tracestate: str
    flags: int
    def __init__(self, traceID: _Optional[int] = ..., traceID_high: _Optional[int] = ..., spanID: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., tracestate: _Optional[str] = ..., flags: _Optional[int] = ...) -> None: ...

class SpanEvent(_message.Message):
    __slots__ = ("time_unix_nano", "name", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeAnyValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeAnyValue, _Mapping]] = ...) -> None: ...
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    time_unix_nano: int
    name: str
    attributes: _containers.MessageMap[str, AttributeAnyValue]
    def __init__(self, time_unix_nano: _Optional[int] = ..., name: _Optional[str] = ..., attributes: _Optional[_Mapping[str, AttributeAnyValue]] = ...) -> None: ...

class AttributeAnyValue(_message.Message):
    __slots__ = ("type", "string_value", "bool_value", "int_value", "double_value", "array_value")
    class AttributeAnyValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STRING_VALUE: _ClassVar[AttributeAnyValue.AttributeAnyValueType]
        BOOL_VALUE: _ClassVar[AttributeAnyValue.AttributeAnyValueType]
        INT_VALUE: _ClassVar[AttributeAnyValue.AttributeAnyValueType]
        DOUBLE_VALUE: _ClassVar[AttributeAnyValue.AttributeAnyValueType]
        ARRAY_VALUE: _ClassVar[AttributeAnyValue.AttributeAnyValueType]
    STRING_VALUE: AttributeAnyValue.AttributeAnyValueType
    BOOL_VALUE: AttributeAnyValue.AttributeAnyValueType
    INT_VALUE: AttributeAnyValue.AttributeAnyValueType
    DOUBLE_VALUE: AttributeAnyValue.AttributeAnyValueType
    ARRAY_VALUE: AttributeAnyValue.AttributeAnyValueType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_VALUE_FIELD_NUMBER: _ClassVar[int]
    type: AttributeAnyValue.AttributeAnyValueType
    string_value: str
    bool_value: bool
    int_value: int
    double_value: float
    array_value: AttributeArray
    def __init__(self, type: _Optional[_Union[AttributeAnyValue.AttributeAnyValueType, str]] = ..., string_value: _Optional[str] = ..., bool_value: bool = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., array_value: _Optional[_Union[AttributeArray, _Mapping]] = ...) -> None: ...

class AttributeArray(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[AttributeArrayValue]
    def __init__(self, values: _Optional[_Iterable[_Union[AttributeArrayValue, _Mapping]]] = ...) -> None: ...

class AttributeArrayValue(_message.Message):
    __slots__ = ("type", "string_value", "bool_value", "int_value", "double_value")
    class AttributeArrayValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STRING_VALUE: _ClassVar[AttributeArrayValue.AttributeArrayValueType]
        BOOL_VALUE: _ClassVar[AttributeArrayValue.AttributeArrayValueType]
        INT_VALUE: _ClassVar[AttributeArrayValue.AttributeArrayValueType]
        DOUBLE_VALUE: _ClassVar[AttributeArrayValue.AttributeArrayValueType]
    STRING_VALUE: AttributeArrayValue.AttributeArrayValueType
    BOOL_VALUE: AttributeArrayValue.AttributeArrayValueType
    INT_VALUE: AttributeArrayValue.AttributeArrayValueType
    DOUBLE_VALUE: AttributeArrayValue.AttributeArrayValueType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    type: AttributeArrayValue.AttributeArrayValueType
    string_value: str
    bool_value: bool
    int_value: int
    double_value: float
    def __init__(self, type: _Optional[_Union[AttributeArrayValue.AttributeArrayValueType, str]] = ..., string_value: _Optional[str] = ..., bool_value: bool = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ...) -> None: ...
