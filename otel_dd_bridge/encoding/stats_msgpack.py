"""Msgpack encoding of client-computed APM stats (wire.md §4.1, §4.4).

Two bodies, both msgpack maps with the **PascalCase** keys of the Agent's generated msgp code
(``pkg/proto/pbgo/trace/stats_gen.go``; libdatadog's serde names), keys matched
case-sensitively by the Agent, unknown keys skipped:

* ``ClientStatsPayload`` — one per request to the Agent's ``/v0.6/stats``:
  ``Hostname, Env, Version, Stats, Lang, TracerVersion, RuntimeID, Sequence, AgentAggregation,
  Service, ContainerID, Tags, GitCommitSha, ImageTag, ProcessTagsHash, ProcessTags``.
  ``Stats`` is an array of ``ClientStatsBucket`` ``{Start, Duration, Stats, AgentTimeShift}``,
  whose ``Stats`` is an array of ``ClientGroupedStats``: ``Service, Name, Resource,
  HTTPStatusCode, Type, DBType, Hits, Errors, Duration, OkSummary, ErrorSummary, Synthetics,
  TopLevelHits, SpanKind, PeerTags, IsTraceRoot, GRPCStatusCode, HTTPMethod, HTTPEndpoint,
  srv_src`` (sic: the service-source key is lower case).
* ``StatsPayload`` — the intake's ``/api/v0.2/stats`` body (before gzip): ``{AgentHostname,
  AgentEnv, Stats: [ClientStatsPayload...], AgentVersion, ClientComputed: true,
  SplitPayload}``.

Types, as the Go msgp readers demand them: every string as msgpack **str**; ``OkSummary`` /
``ErrorSummary`` (serialized ``DDSketch`` protobuf) as **bin**; counters, timestamps and
``HTTPStatusCode`` as non-negative ints (msgpack uint formats); ``Synthetics``,
``ClientComputed`` and ``SplitPayload`` as bool; ``IsTraceRoot`` (Trilean) as int;
``GRPCStatusCode`` as a **string**; ``PeerTags``/``Tags`` as arrays of str (``"key:value"``).
Every field is written, empty ones included, as libdatadog's ``to_vec_named`` does.

Size: at most :data:`MAX_GROUPS_PER_PAYLOAD` (4 000) grouped entries per body, the Agent's
stats writer limit (~375 B each compressed; the intake accepts ~3 MB). Larger payloads are split
by :func:`split_client_payload` / :func:`plan_intake_payloads`; each piece keeps the
``Start``/``Duration`` of the buckets it carries, and the intake pieces are marked
``SplitPayload``. Stats are additive, so the receiver sums the pieces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack

from otel_dd_bridge.stats import ClientStatsPayload, GroupedStats, StatsBucket

__all__ = [
    "CONTENT_TYPE",
    "INTAKE_PATH",
    "MAX_GROUPS_PER_PAYLOAD",
    "STATS_PATH",
    "encode_client_stats",
    "encode_stats_payload",
    "plan_intake_payloads",
    "split_client_payload",
]

STATS_PATH = "/v0.6/stats"
INTAKE_PATH = "/api/v0.2/stats"
CONTENT_TYPE = "application/msgpack"
MAX_GROUPS_PER_PAYLOAD = 4000


def _u(n: int) -> int:
    """Counters are unsigned on the wire: a negative value would fail the Go decoder."""
    return n if n > 0 else 0


def _group(g: GroupedStats) -> dict[str, Any]:
    return {
        "Service": g.service,
        "Name": g.name,
        "Resource": g.resource,
        "HTTPStatusCode": _u(g.http_status_code),
        "Type": g.type,
        "DBType": "",
        "Hits": _u(g.hits),
        "Errors": _u(g.errors),
        "Duration": _u(g.duration),
        "OkSummary": bytes(g.ok_summary),
        "ErrorSummary": bytes(g.error_summary),
        "Synthetics": bool(g.synthetics),
        "TopLevelHits": _u(g.top_level_hits),
        "SpanKind": g.span_kind,
        "PeerTags": list(g.peer_tags),
        "IsTraceRoot": int(g.is_trace_root),
        "GRPCStatusCode": g.grpc_status_code,
        "HTTPMethod": g.http_method,
        "HTTPEndpoint": g.http_endpoint,
        "srv_src": g.service_source,
    }


def _bucket(b: StatsBucket) -> dict[str, Any]:
    return {
        "Start": _u(b.start),
        "Duration": _u(b.duration),
        "Stats": [_group(g) for g in b.stats],
        "AgentTimeShift": 0,
    }


def _client_payload(p: ClientStatsPayload) -> dict[str, Any]:
    return {
        "Hostname": p.hostname,
        "Env": p.env,
        "Version": p.version,
        "Stats": [_bucket(b) for b in p.stats],
        "Lang": p.lang,
        "TracerVersion": p.tracer_version,
        "RuntimeID": p.runtime_id,
        "Sequence": _u(p.sequence),
        "AgentAggregation": "",
        "Service": p.service,
        "ContainerID": p.container_id,
        "Tags": list(p.tags),
        "GitCommitSha": p.git_commit_sha,
        "ImageTag": p.image_tag,
        "ProcessTagsHash": _u(p.process_tags_hash),
        "ProcessTags": p.process_tags,
    }


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def encode_client_stats(payload: ClientStatsPayload) -> bytes:
    """The ``/v0.6/stats`` request body for one payload."""
    return _pack(_client_payload(payload))


def encode_stats_payload(
    payloads: Sequence[ClientStatsPayload],
    *,
    split: bool = False,
    agent_hostname: str = "",
    agent_env: str = "",
    agent_version: str = "",
) -> bytes:
    """The intake's ``StatsPayload`` body (uncompressed) carrying ``payloads``."""
    return _pack({
        "AgentHostname": agent_hostname,
        "AgentEnv": agent_env,
        "Stats": [_client_payload(p) for p in payloads],
        "AgentVersion": agent_version,
        "ClientComputed": True,
        "SplitPayload": bool(split),
    })


def split_client_payload(
    payload: ClientStatsPayload, max_groups: int = MAX_GROUPS_PER_PAYLOAD
) -> list[ClientStatsPayload]:
    """Split one payload into pieces of at most ``max_groups`` grouped entries (in order)."""
    if max_groups < 1:
        raise ValueError("max_groups must be >= 1")
    if payload.group_count() <= max_groups:
        return [payload]
    pieces: list[ClientStatsPayload] = []
    current: list[StatsBucket] = []
    n = 0
    for bucket in payload.stats:
        groups = bucket.stats
        i = 0
        while i < len(groups):
            take = groups[i:i + max_groups - n]
            current.append(StatsBucket(start=bucket.start, duration=bucket.duration, stats=take))
            n += len(take)
            i += len(take)
            if n >= max_groups:
                pieces.append(dataclasses.replace(payload, stats=current))
                current, n = [], 0
    if current:
        pieces.append(dataclasses.replace(payload, stats=current))
    return pieces


def plan_intake_payloads(
    payloads: Sequence[ClientStatsPayload], max_groups: int = MAX_GROUPS_PER_PAYLOAD
) -> list[tuple[list[ClientStatsPayload], bool]]:
    """Group client payloads into intake bodies of at most ``max_groups`` entries each.

    Returns ``(client payloads, split)`` per body; ``split`` is True for bodies that carry a
    piece of a payload that had to be cut (the Agent's ``SplitPayload``).
    """
    bodies: list[tuple[list[ClientStatsPayload], bool]] = []
    current: list[ClientStatsPayload] = []
    n = 0
    split = False
    for payload in payloads:
        pieces = split_client_payload(payload, max_groups)
        was_split = len(pieces) > 1
        for piece in pieces:
            count = piece.group_count()
            if current and n + count > max_groups:
                bodies.append((current, split))
                current, n, split = [], 0, False
            current.append(piece)
            n += count
            split = split or was_split
    if current:
        bodies.append((current, split))
    return bodies
