"""Obfuscation as the Datadog Agent does it (otel_dd_bridge.obfuscate).

Each case is named and states the Agent rule it checks. Inputs are our own; expected outputs follow
from the Agent's documented behaviour (legacy SQL tokenizer with the trace-agent defaults: no table
names, no digit replacement, aliases dropped, ``$func$`` not special) and the facts of its tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

from otel_dd_bridge.model import DDSpan, TraceChunk
from otel_dd_bridge.obfuscate import (
    NON_PARSABLE_SQL,
    Obfuscator,
    SQLObfuscationError,
    is_card_number,
    obfuscate_chunks,
    obfuscate_json,
    obfuscate_memcached,
    obfuscate_redis,
    obfuscate_url,
    quantize_redis,
    remove_all_redis_args,
)
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.spans import make_span


@dataclass(frozen=True)
class SQLCase:
    name: str
    query: str
    expected: str | None  # None: the Agent rejects it (Non-parsable SQL query)


SQL_CASES = [
    SQLCase("integer", "SELECT * FROM users WHERE id = 42", "SELECT * FROM users WHERE id = ?"),
    SQLCase("no space around =", "SELECT a FROM t WHERE b=7", "SELECT a FROM t WHERE b = ?"),
    SQLCase("negative number", "SELECT * FROM t WHERE x = -17", "SELECT * FROM t WHERE x = ?"),
    SQLCase("float and exponent", "SELECT * FROM t WHERE x > 1.5e-3 AND y < .25",
            "SELECT * FROM t WHERE x > ? AND y < ?"),
    SQLCase("hex number", "SELECT * FROM t WHERE flags & 0xFF00 = 0x10",
            "SELECT * FROM t WHERE flags & ? = ?"),
    SQLCase("hex string literal keeps its prefix word", "SELECT * FROM t WHERE b = X'DEADBEEF'",
            "SELECT * FROM t WHERE b = X ?"),
    SQLCase("binary string literal", "SELECT * FROM t WHERE b = b'0101'",
            "SELECT * FROM t WHERE b = b ?"),
    SQLCase("single-quoted string", "SELECT * FROM t WHERE name = 'alice'",
            "SELECT * FROM t WHERE name = ?"),
    SQLCase("doubled quote inside string", "SELECT * FROM t WHERE name = 'O''Reilly' AND a = 1",
            "SELECT * FROM t WHERE name = ? AND a = ?"),
    SQLCase("backslash-escaped quote", "SELECT * FROM t WHERE name = 'it\\'s' AND a = 1",
            "SELECT * FROM t WHERE name = ? AND a = ?"),
    SQLCase("literal backslash before the closing quote (retried as literal)",
            "SELECT * FROM files WHERE dir = 'C:\\' AND size > 10",
            "SELECT * FROM files WHERE dir = ? AND size > ?"),
    SQLCase("empty string", "UPDATE t SET a = '' WHERE b = 'x'", "UPDATE t SET a = ? WHERE b = ?"),
    SQLCase("double-quoted identifiers are unquoted", 'SELECT "name" FROM "users" WHERE "id" = 3',
            "SELECT name FROM users WHERE id = ?"),
    SQLCase("double-quoted value after = is hidden", 'SELECT * FROM t WHERE a = "secret"',
            "SELECT * FROM t WHERE a = ?"),
    SQLCase("backtick identifiers", "SELECT `a`.`b` FROM `db`.`tbl`",
            "SELECT a . b FROM db . tbl"),
    SQLCase("dollar-quoted string", "SELECT $$it's raw$$ FROM t", "SELECT ? FROM t"),
    SQLCase("tagged dollar-quoted string", "SELECT $body$ a $ b $body$, 5",
            "SELECT ?"),
    SQLCase("$func$ is an ordinary string by default",
            "SELECT $func$INSERT INTO t VALUES (1)$func$ FROM u", "SELECT ? FROM u"),
    SQLCase("IN list collapsed", "SELECT * FROM t WHERE id IN (1, 2, 3, 4)",
            "SELECT * FROM t WHERE id IN ( ? )"),
    SQLCase("IN list of strings collapsed", "SELECT * FROM t WHERE c IN ('a', 'b')",
            "SELECT * FROM t WHERE c IN ( ? )"),
    SQLCase("multi-row VALUES collapsed", "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
            "INSERT INTO t ( a, b ) VALUES ( ? )"),
    SQLCase("subquery in parentheses kept", "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = 9)",
            "SELECT * FROM t WHERE id IN ( SELECT id FROM u WHERE k = ? )"),
    SQLCase("ARRAY literal collapsed", "SELECT * FROM t WHERE k = ANY(array[3, 4, 5])",
            "SELECT * FROM t WHERE k = ANY ( array [ ? ] )"),
    SQLCase("line comment removed", "SELECT a -- pick a\nFROM t WHERE b = 2",
            "SELECT a FROM t WHERE b = ?"),
    SQLCase("block comment removed", "/* app=web, user=42 */ SELECT a FROM t /* tail */",
            "SELECT a FROM t"),
    SQLCase("hash comment removed", "SELECT a FROM t # mysql style\nWHERE b = 1",
            "SELECT a FROM t WHERE b = ?"),
    SQLCase("several statements: ';' dropped", "SELECT 1; SELECT name FROM t WHERE id = 2;",
            "SELECT ? SELECT name FROM t WHERE id = ?"),
    SQLCase("alias removed", "SELECT count(*) AS n, u.name AS who FROM users u",
            "SELECT count ( * ), u.name FROM users u"),
    SQLCase("identifiers with digits kept", "SELECT col1 FROM table2 WHERE t3.c4 = 5",
            "SELECT col1 FROM table2 WHERE t3.c4 = ?"),
    SQLCase("? placeholders collapsed only in groups", "SELECT * FROM t WHERE a = ? AND b IN (?, ?)",
            "SELECT * FROM t WHERE a = ? AND b IN ( ? )"),
    SQLCase("$1 positional parameters", "SELECT * FROM t WHERE a = $1 AND b = $2",
            "SELECT * FROM t WHERE a = ? AND b = ?"),
    SQLCase("named bind parameter kept", "SELECT * FROM t WHERE a = :name",
            "SELECT * FROM t WHERE a = :name"),
    SQLCase("python format parameters", "UPDATE t SET a = %s WHERE b = %(key)s",
            "UPDATE t SET a = ? WHERE b = ?"),
    SQLCase("NULL and booleans", "UPDATE t SET a = NULL, b = TRUE WHERE c = false",
            "UPDATE t SET a = ? b = ? WHERE c = ?"),
    SQLCase("LIMIT and OFFSET", "SELECT * FROM t LIMIT 10 OFFSET 20",
            "SELECT * FROM t LIMIT ? OFFSET ?"),
    SQLCase("MySQL LIMIT a, b", "SELECT * FROM t LIMIT 5, 10", "SELECT * FROM t LIMIT ?"),
    SQLCase("SAVEPOINT name hidden", "SAVEPOINT before_update", "SAVEPOINT ?"),
    SQLCase("postgres cast", "SELECT * FROM t WHERE d > '2024-01-01'::date",
            "SELECT * FROM t WHERE d > ? :: date"),
    SQLCase("ODBC call escape keeps braces", "{call sp_update(?, 'x')}",
            "{ call sp_update ( ? ) }"),
    SQLCase("whitespace normalized", "  SELECT\n\ta\n  FROM\tt  ", "SELECT a FROM t"),
    SQLCase("non-ASCII identifiers and strings", "SELECT prénom FROM clients WHERE ville = 'Zürich'",
            "SELECT prénom FROM clients WHERE ville = ?"),
    SQLCase("CJK identifier", "SELECT 名前 FROM 表 WHERE 番号 = 7", "SELECT 名前 FROM 表 WHERE 番号 = ?"),
    SQLCase("not operator", "SELECT * FROM t WHERE !active", "SELECT * FROM t WHERE ! active"),
    SQLCase("cassandra CQL", "SELECT * FROM ks.users WHERE user_id = 123e4567 LIMIT 1",
            "SELECT * FROM ks.users WHERE user_id = ? LIMIT ?"),
    # rejected queries: the Agent writes "Non-parsable SQL query", never the raw text
    SQLCase("unterminated string", "SELECT * FROM t WHERE a = 'oops", None),
    SQLCase("unterminated block comment", "SELECT a FROM t /* never closed", None),
    SQLCase("only a comment (empty result)", "-- nothing here", None),
    SQLCase("illegal octal literal", "SELECT * FROM t WHERE zip = 09001", None),
    SQLCase("emoji outside a string", "SELECT 🥒 FROM t", None),
    SQLCase("stray closing brace", "SELECT a } FROM t", None),
    SQLCase("'!' at the end", "SELECT a FROM t WHERE !", None),
    SQLCase("unterminated dollar quote", "SELECT $tag$ never closed", None),
    SQLCase("string cut by truncation", "INSERT INTO t VALUES ('" + "x" * 50, None),
]


@pytest.mark.parametrize("case", SQL_CASES, ids=lambda c: c.name)
def test_sql_case(case: SQLCase) -> None:
    ob = Obfuscator()
    if case.expected is None:
        with pytest.raises(SQLObfuscationError):
            ob.obfuscate_sql(case.query)
    else:
        assert ob.obfuscate_sql(case.query) == case.expected


def test_sql_very_long_in_list_collapses() -> None:
    query = "SELECT * FROM t WHERE id IN (" + ", ".join(str(i) for i in range(3000)) + ")"
    assert len(query) > 5000
    assert Obfuscator().obfuscate_sql(query) == "SELECT * FROM t WHERE id IN ( ? )"


def test_sql_literal_escape_mode_sticks_like_the_agent() -> None:
    """After a query that only parses with literal backslashes, the Agent reads later queries that
    way first (and switches back when one only parses with escapes)."""
    ob = Obfuscator()
    assert ob.obfuscate_sql("SELECT * FROM f WHERE d = 'C:\\' AND n = 1") == (
        "SELECT * FROM f WHERE d = ? AND n = ?"
    )
    assert ob._literal_escapes is True
    assert ob.obfuscate_sql("SELECT 'it\\'s'") == "SELECT ?"
    assert ob._literal_escapes is False


# ------------------------------------------------------------------ redis / memcached / json / url
REDIS_QUANTIZE = [
    ("single command", "GET user:42", "GET"),
    ("lower case upper-cased", "set k v", "SET"),
    ("three commands then ...", "GET a\nSET b c\nHSET h f v\nDEL x", "GET SET HSET ..."),
    ("compound command", "CLIENT SETNAME myapp", "CLIENT SETNAME"),
    ("blank lines skipped", "\n\nINCR counter\n", "INCR"),
    ("tracer truncation mark on a command", "SET k v\nGE...", "SET ..."),
    ("extra spaces", "  MGET   a  b  ", "MGET"),
]


@pytest.mark.parametrize(("name", "cmd", "expected"), REDIS_QUANTIZE, ids=[c[0] for c in REDIS_QUANTIZE])
def test_redis_quantize(name: str, cmd: str, expected: str) -> None:
    assert quantize_redis(cmd) == expected


REDIS_RAW = [
    ("SET value hidden", "SET user:1 secret", "SET user:1 ?"),
    ("SET with options", "SET k v EX 60", "SET k ? EX 60"),
    ("AUTH password hidden", "AUTH hunter2", "AUTH ?"),
    ("AUTH user and password collapse", "AUTH admin hunter2", "AUTH ?"),
    ("GET untouched", "GET user:1", "GET user:1"),
    ("HSET value hidden", "HSET h field value", "HSET h field ?"),
    ("LPUSH values collapsed", "LPUSH list a b c", "LPUSH list ?"),
    ("MSET every value", "MSET a 1 b 2 c 3", "MSET a ? b ? c ?"),
    ("HMSET every value", "HMSET h f1 v1 f2 v2", "HMSET h f1 ? f2 ?"),
    ("ZADD scores kept, members hidden", "ZADD z NX 1 alice 2 bob", "ZADD z NX 1 ? 2 ?"),
    ("GEOADD member hidden", "GEOADD g 13.36 38.11 palermo", "GEOADD g 13.36 38.11 ?"),
    ("CONFIG SET value", "CONFIG SET requirepass s3cret", "CONFIG SET requirepass ?"),
    ("quoted argument with spaces", 'SET k "two words"', "SET k ?"),
    ("multi-command string", "SET a 1\nGET a\nAUTH pw", "SET a ?\nGET a\nAUTH ?"),
    ("unknown command kept", "XADD s * f v", "XADD s * f v"),
]


@pytest.mark.parametrize(("name", "cmd", "expected"), REDIS_RAW, ids=[c[0] for c in REDIS_RAW])
def test_redis_raw_command(name: str, cmd: str, expected: str) -> None:
    assert obfuscate_redis(cmd) == expected


def test_redis_remove_all_args_variant() -> None:
    assert remove_all_redis_args("SET k v EX 1") == "SET ?"
    assert remove_all_redis_args("CONFIG GET maxmemory") == "CONFIG GET ?"
    assert remove_all_redis_args("PING") == "PING"


def test_memcached() -> None:
    assert obfuscate_memcached("set key 0 0 5\r\nvalue") == ""
    assert obfuscate_memcached("set key 0 0 5\r\nvalue", keep_command=True) == "set key 0 0 5"


JSON_CASES = [
    ("flat object", '{"name": "bob", "age": 42}', '{"name":"?","age":"?"}'),
    ("nested operators", '{"filter": {"age": {"$gt": 30}}, "limit": 5}',
     '{"filter":{"age":{"$gt":"?"}},"limit":"?"}'),
    ("array values", '{"ids": [1, 2, "x", true, null]}', '{"ids":["?","?","?","?","?"]}'),
    ("escaped string value", '{"q": "say \\"hi\\""}', '{"q":"?"}'),
    ("truncated body keeps what was hidden", '{"a": 1, "b": "sec', '{"a":"?","b":"?"...'),
    ("bare word read as a broken literal", "find users", '"?"...'),
    ("not JSON at all", "<xml/>", "..."),
]


@pytest.mark.parametrize(("name", "body", "expected"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_json_bodies(name: str, body: str, expected: str) -> None:
    assert obfuscate_json(body) == expected


URL_CASES = [
    ("plain URL untouched", "https://api.example.com/v1/users/42?q=1", "https://api.example.com/v1/users/42?q=1"),
    ("user info removed", "https://bob:pa55@api.example.com/x", "https://api.example.com/x"),
    ("user only removed", "http://bob@h:8080/", "http://h:8080/"),
    ("@ in the query kept", "http://h/p?email=a@b.c", "http://h/p?email=a@b.c"),
    ("relative URL untouched", "/users/42", "/users/42"),
]


@pytest.mark.parametrize(("name", "url", "expected"), URL_CASES, ids=[c[0] for c in URL_CASES])
def test_http_url(name: str, url: str, expected: str) -> None:
    assert obfuscate_url(url) == expected


CARD_CASES = [
    ("visa", "4111 1111 1111 1111", True),
    ("mastercard with dashes", "5105-1051-0510-5100", True),
    ("amex 15 digits", "378282246310005", True),
    ("too short", "41111111111", False),
    ("letters", "4111-1111-1111-111a", False),
    ("unknown prefix", "9111111111111111", False),
    ("too long", "41111111111111111", False),
]


@pytest.mark.parametrize(("name", "value", "expected"), CARD_CASES, ids=[c[0] for c in CARD_CASES])
def test_card_numbers(name: str, value: str, expected: bool) -> None:
    assert is_card_number(value) is expected


def test_card_luhn_option() -> None:
    assert is_card_number("4111111111111111", luhn=True)
    assert not is_card_number("4111111111111112", luhn=True)


# ------------------------------------------------------------------------------------- spans
def _span(type_: str, resource: str, meta: dict[str, str] | None = None) -> DDSpan:
    return DDSpan(1, 2, 0, "svc", "op", resource, type_, 0, 1, 0, dict(meta or {}), {})


@dataclass
class SpanCase:
    name: str
    span: DDSpan
    resource: str
    meta: dict[str, str | None] = field(default_factory=dict)  # None: key absent


SPAN_CASES = [
    SpanCase("sql resource and sql.query", _span("sql", "SELECT * FROM t WHERE a = 1"),
             "SELECT * FROM t WHERE a = ?", {"sql.query": "SELECT * FROM t WHERE a = ?"}),
    SpanCase("cassandra too", _span("cassandra", "SELECT * FROM ks.t WHERE k = 'x'"),
             "SELECT * FROM ks.t WHERE k = ?", {"sql.query": "SELECT * FROM ks.t WHERE k = ?"}),
    SpanCase("db.statement equal to the resource reuses the result",
             _span("sql", "SELECT 1", {"db.statement": "SELECT 1"}), "SELECT ?",
             {"db.statement": "SELECT ?", "sql.query": "SELECT ?"}),
    SpanCase("db.query.text obfuscated on its own",
             _span("sql", "SELECT users", {"db.query.text": "SELECT * FROM users WHERE id = 5"}),
             "SELECT users", {"db.query.text": "SELECT * FROM users WHERE id = ?"}),
    SpanCase("unparsable SQL never keeps the raw query",
             _span("sql", "SELECT 'secret", {"db.statement": "SELECT 'secret"}), NON_PARSABLE_SQL,
             {"sql.query": NON_PARSABLE_SQL, "db.statement": NON_PARSABLE_SQL}),
    SpanCase("empty SQL resource left alone", _span("sql", ""), "", {"sql.query": None}),
    SpanCase("non-SQL type untouched", _span("custom", "SELECT 1"), "SELECT 1", {"sql.query": None}),
    SpanCase("redis resource quantized and raw command obfuscated",
             _span("redis", "SET session:1 token", {"redis.raw_command": "SET session:1 token"}),
             "SET", {"redis.raw_command": "SET session:1 ?"}),
    SpanCase("valkey like redis",
             _span("valkey", "AUTH pw", {"valkey.raw_command": "AUTH pw"}), "AUTH",
             {"valkey.raw_command": "AUTH ?"}),
    SpanCase("memcached command emptied",
             _span("memcached", "set", {"memcached.command": "set k 0 0 3\r\nabc"}), "set",
             {"memcached.command": ""}),
    SpanCase("mongodb query values hidden",
             _span("mongodb", "find", {"mongodb.query": '{"email": "a@b.c"}'}), "find",
             {"mongodb.query": '{"email":"?"}'}),
    SpanCase("elasticsearch and opensearch bodies",
             _span("elasticsearch", "GET /idx/_search",
                   {"elasticsearch.body": '{"match": {"u": "x"}}', "opensearch.body": "[1]"}),
             "GET /idx/_search",
             {"elasticsearch.body": '{"match":{"u":"?"}}', "opensearch.body": '["?"]'}),
    SpanCase("http url user info",
             _span("http", "GET", {"http.url": "https://u:p@h/p?q=1"}), "GET",
             {"http.url": "https://h/p?q=1"}),
    SpanCase("card number in any tag",
             _span("web", "GET /pay", {"payment.card": "4111-1111-1111-1111", "http.method": "GET"}),
             "GET /pay", {"payment.card": "?", "http.method": "GET"}),
    SpanCase("card-like value under a safe key kept",
             _span("web", "GET", {"_dd.p.tid": "4111111111111111", "version": "4111111111111111"}),
             "GET", {"_dd.p.tid": "4111111111111111", "version": "4111111111111111"}),
]


@pytest.mark.parametrize("case", SPAN_CASES, ids=lambda c: c.name)
def test_span_case(case: SpanCase) -> None:
    obfuscate_chunks([TraceChunk(spans=[case.span])], Obfuscator())
    assert case.span.resource == case.resource
    got = {k: case.span.meta.get(k) for k in case.meta}
    assert got == case.meta, f"full meta: {case.span.meta}"


@dataclass
class StatementCase:
    """One span under both values of ``all_statements`` (``obfuscate_all_statements``).

    ``on`` / ``off``: the expected ``(resource, meta)``, ``None`` in meta meaning absent. Off is
    exactly the Agent (which forwards these raw); on strips what the Agent leaves.
    """

    name: str
    type: str
    resource: str
    meta: dict[str, str]
    on: tuple[str, dict[str, str | None]]
    off: tuple[str, dict[str, str | None]]


_MC_SET = "set session:abc 0 3600 11\r\nhello world"
_MC_SET_LINE = "set session:abc 0 3600 11"

STATEMENT_CASES = [
    StatementCase("redis db.statement hides values like raw_command", "redis",
                  "SET user:1 alice EX 60", {"db.statement": "SET user:1 alice EX 60"},
                  on=("SET", {"db.statement": "SET user:1 ? EX 60"}),
                  off=("SET", {"db.statement": "SET user:1 alice EX 60"})),
    StatementCase("redis db.query.text AUTH password hidden", "redis", "AUTH hunter2",
                  {"db.query.text": "AUTH hunter2"},
                  on=("AUTH", {"db.query.text": "AUTH ?"}),
                  off=("AUTH", {"db.query.text": "AUTH hunter2"})),
    StatementCase("redis pipeline statement, each command", "redis", "SET a 1\nHSET h f v\nGET a",
                  {"db.statement": "SET a 1\nHSET h f v\nGET a"},
                  on=("SET HSET GET ...", {"db.statement": "SET a ?\nHSET h f ?\nGET a"}),
                  off=("SET HSET GET ...", {"db.statement": "SET a 1\nHSET h f v\nGET a"})),
    StatementCase("redis statement, query text and raw command together", "redis",
                  "HSET h f secret",
                  {"db.statement": "HSET h f secret", "db.query.text": "HSET h f secret",
                   "redis.raw_command": "HSET h f secret"},
                  on=("HSET", {"db.statement": "HSET h f ?", "db.query.text": "HSET h f ?",
                               "redis.raw_command": "HSET h f ?"}),
                  off=("HSET", {"db.statement": "HSET h f secret",
                                "db.query.text": "HSET h f secret",
                                "redis.raw_command": "HSET h f ?"})),
    StatementCase("redis read command keeps its key", "redis", "GET user:1",
                  {"db.statement": "GET user:1"},
                  on=("GET", {"db.statement": "GET user:1"}),
                  off=("GET", {"db.statement": "GET user:1"})),
    StatementCase("valkey statement like redis", "valkey", "MSET a 1 b 2",
                  {"db.statement": "MSET a 1 b 2"},
                  on=("MSET", {"db.statement": "MSET a ? b ?"}),
                  off=("MSET", {"db.statement": "MSET a 1 b 2"})),
    StatementCase("memcached storage command loses its data block", "memcached", _MC_SET,
                  {"db.statement": _MC_SET},
                  on=(_MC_SET_LINE, {"db.statement": _MC_SET_LINE}),
                  off=(_MC_SET, {"db.statement": _MC_SET})),
    StatementCase("memcached data with CRLF inside: only the first line kept", "memcached",
                  "set k 0 0 9\r\nab\r\ncd\r\ne", {"db.query.text": "set k 0 0 9\r\nab\r\ncd\r\ne"},
                  on=("set k 0 0 9", {"db.query.text": "set k 0 0 9"}),
                  off=("set k 0 0 9\r\nab\r\ncd\r\ne",
                       {"db.query.text": "set k 0 0 9\r\nab\r\ncd\r\ne"})),
    StatementCase("memcached command line trimmed like the Agent", "memcached",
                  " incr visits 1 \r\n", {"db.statement": " incr visits 1 \r\n"},
                  on=("incr visits 1", {"db.statement": "incr visits 1"}),
                  off=(" incr visits 1 \r\n", {"db.statement": " incr visits 1 \r\n"})),
    StatementCase("memcached read command kept whole", "memcached", "get session:abc",
                  {"db.statement": "get session:abc"},
                  on=("get session:abc", {"db.statement": "get session:abc"}),
                  off=("get session:abc", {"db.statement": "get session:abc"})),
    StatementCase("memcached resource that is only data falls back to the span name",
                  "memcached", "\r\nsecret", {},
                  on=("op", {"db.statement": None}), off=("\r\nsecret", {"db.statement": None})),
    StatementCase("memcached.command emptied under both settings (the Agent default)",
                  "memcached", "set", {"memcached.command": "set k 0 0 3\r\nabc"},
                  on=("set", {"memcached.command": ""}), off=("set", {"memcached.command": ""})),
    StatementCase("other types keep their statements", "custom", "SET k v",
                  {"db.statement": "SET k v\r\nx"},
                  on=("SET k v", {"db.statement": "SET k v\r\nx"}),
                  off=("SET k v", {"db.statement": "SET k v\r\nx"})),
    StatementCase("sql unaffected by the setting", "sql", "SELECT 1",
                  {"db.statement": "SELECT 2"},
                  on=("SELECT ?", {"db.statement": "SELECT ?", "sql.query": "SELECT ?"}),
                  off=("SELECT ?", {"db.statement": "SELECT ?", "sql.query": "SELECT ?"})),
]


@pytest.mark.parametrize("all_statements", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("case", STATEMENT_CASES, ids=lambda c: c.name)
def test_statement_case(case: StatementCase, all_statements: bool) -> None:
    span = _span(case.type, case.resource, case.meta)
    obfuscate_chunks([TraceChunk(spans=[span])], Obfuscator(all_statements=all_statements))
    resource, meta = case.on if all_statements else case.off
    assert span.resource == resource
    assert {k: span.meta.get(k) for k in meta} == meta, f"full meta: {span.meta}"


def test_all_statements_is_the_default() -> None:
    """Without arguments the obfuscator strips the values, as the setting's default says."""
    span = _span("memcached", _MC_SET, {"db.statement": _MC_SET})
    obfuscate_chunks([TraceChunk(spans=[span])])
    assert (span.resource, span.meta["db.statement"]) == (_MC_SET_LINE, _MC_SET_LINE)


def test_statement_cut_at_the_tag_limit_still_loses_its_value() -> None:
    """Normalization cuts a 30 000-byte statement to 25 000 + ``...`` first; the value is still
    recognised as the value (a truncated memcached data block is still after the line)."""
    from otel_dd_bridge.normalize import truncate_meta_value

    long = truncate_meta_value("SET k " + "v" * 30_000)
    span = _span("redis", "SET", {"db.statement": long})
    obfuscate_chunks([TraceChunk(spans=[span])], Obfuscator())
    assert span.meta["db.statement"] == "SET k ?"
    long = truncate_meta_value("set k 0 0 30000\r\n" + "v" * 30_000)
    span = _span("memcached", long, {"db.statement": long})
    obfuscate_chunks([TraceChunk(spans=[span])], Obfuscator())
    assert (span.resource, span.meta["db.statement"]) == ("set k 0 0 30000",) * 2


def test_translated_otel_spans_end_to_end() -> None:
    """Real SDK spans through translate then obfuscate: no literal survives in what we would send."""
    spans = [
        make_span("query", kind=SpanKind.CLIENT, span_id=11, attributes={
            "db.system": "postgresql",
            "db.statement": "SELECT * FROM accounts WHERE email = 'bob@example.com' AND pin = 1234",
        }),
        make_span("cache", kind=SpanKind.CLIENT, span_id=12, attributes={
            "db.system": "redis", "db.statement": "AUTH supersecret",
        }),
    ]
    chunks = translate_spans(spans, TranslateOptions())
    obfuscate_chunks(chunks, Obfuscator())
    by_id = {s.span_id: s for c in chunks for s in c.spans}
    sql = by_id[11]
    assert sql.type == "sql"
    assert sql.resource == "SELECT * FROM accounts WHERE email = ? AND pin = ?"
    assert sql.meta["sql.query"] == sql.resource
    assert "bob@example.com" not in repr(sql) and "1234" not in sql.meta.get("db.statement", "")
    redis = by_id[12]
    assert redis.type == "redis"
    assert redis.resource == "AUTH"


def test_never_raises_and_leaves_safe_values(monkeypatch: pytest.MonkeyPatch) -> None:
    ob = Obfuscator()

    def boom(query: str) -> tuple[str, bool]:
        raise RuntimeError("bug")

    monkeypatch.setattr(ob, "_sql", boom)
    span = _span("sql", "SELECT 'secret'", {"db.statement": "SELECT 'secret'"})
    redis = _span("redis", "SET a b", {"redis.raw_command": "SET a b"})
    monkeypatch.setattr(ob, "_quantize_redis", boom)
    ob.obfuscate_chunks([TraceChunk(spans=[span, redis])])
    assert span.resource == NON_PARSABLE_SQL
    assert span.meta == {"db.statement": NON_PARSABLE_SQL, "sql.query": NON_PARSABLE_SQL}
    assert redis.resource == "?" and redis.meta["redis.raw_command"] == "?"
    # garbage in place of a chunk: skipped, and the chunks after it are still obfuscated
    later = _span("redis", "AUTH pw", {"redis.raw_command": "AUTH pw"})
    obfuscate_chunks([None, TraceChunk(spans=[later])], Obfuscator())  # type: ignore[list-item]
    assert later.resource == "AUTH" and later.meta["redis.raw_command"] == "AUTH ?"


@pytest.mark.parametrize("all_statements", [True, False], ids=["on", "off"])
def test_safe_values_cover_statement_tags_when_on(
    monkeypatch: pytest.MonkeyPatch, all_statements: bool
) -> None:
    """A bug inside obfuscation: with the setting on the statement tags of Redis and Memcached
    spans become ``?`` too; off, they stay what the Agent would forward (raw)."""
    import otel_dd_bridge.obfuscate as mod

    def boom(command: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(mod, "obfuscate_redis", boom)
    monkeypatch.setattr(mod, "_memcached_command_line", boom)
    redis = _span("redis", "SET a b", {"db.statement": "SET a b", "redis.raw_command": "SET a b"})
    mc = _span("memcached", _MC_SET, {"db.statement": _MC_SET, "memcached.command": _MC_SET})
    Obfuscator(all_statements=all_statements).obfuscate_chunks([TraceChunk(spans=[redis, mc])])
    assert redis.resource == "?" and redis.meta["redis.raw_command"] == "?"
    if all_statements:
        assert redis.meta["db.statement"] == "?"
        assert mc.resource == "?" and mc.meta == {"db.statement": "?", "memcached.command": "?"}
    else:
        assert redis.meta["db.statement"] == "SET a b"
        # off, the memcached span never reaches the failing helper: the Agent's treatment
        assert mc.resource == _MC_SET
        assert mc.meta == {"db.statement": _MC_SET, "memcached.command": ""}


def test_cache_is_bounded_by_memory_and_hits() -> None:
    budget = 1000
    ob = Obfuscator(cache_max_bytes=budget)
    for i in range(100):
        ob.obfuscate_sql(f"SELECT column_{i} FROM some_table WHERE a = {i}")
    assert 0 < len(ob._sql_cache) < 100
    assert ob._sql_cache.cost <= budget
    assert ob._sql_cache.get("SELECT column_99 FROM some_table WHERE a = 99") == (
        "SELECT column_99 FROM some_table WHERE a = ?", True)
    assert ob._sql_cache.get("SELECT column_0 FROM some_table WHERE a = 0") is None  # evicted
    off = Obfuscator(cache_max_bytes=0)
    off.obfuscate_sql("SELECT 1")
    assert len(off._sql_cache) == 0
    big = "SELECT " + ", ".join(f"c{i}" for i in range(400))  # larger than the whole budget
    ob.obfuscate_sql(big)
    assert ob._sql_cache.get(big) is None and ob._sql_cache.cost <= budget


def test_redis_statements_cached_apart_from_resources() -> None:
    """The statement equals the resource here, yet each keeps its own result (and cache)."""
    ob = Obfuscator()
    for _ in range(2):
        span = _span("redis", "SET k v", {"db.statement": "SET k v"})
        ob.obfuscate_chunks([TraceChunk(spans=[span])])
        assert (span.resource, span.meta["db.statement"]) == ("SET", "SET k ?")
    assert ob._redis_stmt_cache.get("SET k v") == ("SET k ?", True)
    assert ob._redis_cache.get("SET k v") == ("SET", True)
    off = Obfuscator(cache_max_bytes=0)
    span = _span("redis", "SET k v", {"db.statement": "SET k v"})
    off.obfuscate_chunks([TraceChunk(spans=[span])])
    assert span.meta["db.statement"] == "SET k ?" and len(off._redis_stmt_cache) == 0


def test_cached_lookup_is_cheap() -> None:
    """A repeated statement costs a cache look-up: far below one tokenization."""
    query = "SELECT a, b, c FROM orders o JOIN users u ON u.id = o.uid WHERE o.id = 42 AND u.x = 'y'"
    n = 2000
    cold = Obfuscator(cache_max_bytes=0)
    t0 = time.perf_counter()
    for _ in range(n):
        cold.obfuscate_sql(query)
    uncached = time.perf_counter() - t0
    warm = Obfuscator()
    t0 = time.perf_counter()
    for _ in range(n):
        warm.obfuscate_sql(query)
    cached = time.perf_counter() - t0
    assert cached * 5 < uncached, (cached, uncached)


_SQL_PIECES = st.sampled_from(
    list("abcXYZ019 ,;()$?:=<>!-+*/#.\n{}[]%@") + ["SELECT ", " FROM ", " IN ", "é", "🥒", "\\"]
)
_SQL_TEXT = st.lists(_SQL_PIECES, max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(_SQL_TEXT, _SQL_TEXT)
def test_property_a_quoted_literal_never_survives(prefix: str, suffix: str) -> None:
    """Whatever surrounds a single-quoted literal, its text never reaches resource or sql.query,
    and obfuscation never raises. (Quotes and backticks are left out of the surroundings: another
    quote would make the secret a bare word, and the Agent reads double-quoted and backticked text
    as identifiers and keeps it, on purpose.)"""
    secret = "S3CRETxq"
    span = _span("sql", f"{prefix} '{secret}' {suffix}")
    obfuscate_chunks([TraceChunk(spans=[span])], Obfuscator())
    assert secret not in span.resource
    assert secret not in span.meta["sql.query"]
    assert span.meta["sql.query"] == span.resource


def test_cache_setting_reaches_the_exporter() -> None:
    from otel_dd_bridge.exporter import DatadogSpanExporter

    exp = DatadogSpanExporter(
        mode="agentless", api_key="k", intake_url="http://127.0.0.1:9",
        _environ={"OTEL_DD_BRIDGE_OBFUSCATION_CACHE_MAX_BYTES": "777"},
    )
    try:
        assert exp.config.obfuscation_cache_max_bytes == 777
        assert exp._obfuscator._sql_cache._max == 777
    finally:
        exp.shutdown()


@pytest.mark.parametrize(("env", "want"), [({}, True), (
    {"OTEL_DD_BRIDGE_OBFUSCATE_ALL_STATEMENTS": "false"}, False)], ids=["default", "env false"])
def test_all_statements_setting_reaches_the_exporter(env: dict[str, str], want: bool) -> None:
    from otel_dd_bridge.exporter import DatadogSpanExporter

    exp = DatadogSpanExporter(mode="agentless", api_key="k", intake_url="http://127.0.0.1:9",
                              _environ=env)
    try:
        assert exp.config.obfuscate_all_statements is want
        assert exp._obfuscator.all_statements is want
    finally:
        exp.shutdown()


@pytest.mark.parametrize("all_statements", [True, False], ids=["on", "off"])
def test_agentless_export_of_cache_statements(all_statements: bool) -> None:
    """Real SDK spans through the exporter to the fake intake (decoded independently): with the
    setting on no stored value of a Redis or Memcached statement arrives; off, exactly what the
    Agent forwards (resource quantized / memcached.command emptied, statements raw)."""
    from otel_dd_bridge.exporter import DatadogSpanExporter
    from tests.harness.fakeintake import TRACES_PATH, FakeIntake

    spans = [
        make_span("SET", kind=SpanKind.CLIENT, span_id=31, attributes={
            "db.system": "redis", "db.statement": "SET token abc123 EX 60",
        }),
        make_span("set", kind=SpanKind.CLIENT, span_id=32, attributes={
            "db.system": "memcached", "db.statement": "set sess 0 60 9\r\nxyz789abc",
        }),
    ]
    with FakeIntake() as intake:
        exp = DatadogSpanExporter(mode="agentless", api_key="k", intake_url=intake.url,
                                  compute_stats=False, obfuscate_all_statements=all_statements)
        try:
            exp.export(spans)
            intake.wait_for(1, path=TRACES_PATH)
            got = {s["spanID"]: s for s in intake.spans()}
        finally:
            exp.shutdown()
    redis, mc = got[31], got[32]
    assert (redis["type"], redis["resource"], mc["type"]) == ("redis", "SET", "memcached")
    if all_statements:
        assert redis["meta"]["db.statement"] == "SET token ? EX 60"
        assert mc["resource"] == mc["meta"]["db.statement"] == "set sess 0 60 9"
        assert "abc123" not in str(redis) and "xyz789abc" not in str(mc)
    else:
        assert redis["meta"]["db.statement"] == "SET token abc123 EX 60"
        assert mc["resource"] == mc["meta"]["db.statement"] == "set sess 0 60 9\r\nxyz789abc"


def test_agentless_export_sends_obfuscated_spans_to_the_intake() -> None:
    """Through the real exporter to the local fake intake (decoded independently)."""
    from otel_dd_bridge.exporter import DatadogSpanExporter
    from tests.harness.fakeintake import TRACES_PATH, FakeIntake

    spans = [
        make_span("query", kind=SpanKind.CLIENT, span_id=21, attributes={
            "db.system": "mysql",
            "db.statement": "UPDATE users SET pw = 'hunter2' WHERE id IN (1, 2, 3)",
        }),
        make_span("cache", kind=SpanKind.CLIENT, span_id=22, attributes={
            "db.system": "redis", "db.statement": "SET token abc123",
        }),
    ]
    with FakeIntake() as intake:
        exp = DatadogSpanExporter(mode="agentless", api_key="k", intake_url=intake.url,
                                  compute_stats=False)
        try:
            exp.export(spans)
            intake.wait_for(1, path=TRACES_PATH)
            got = {s["spanID"]: s for s in intake.spans()}
        finally:
            exp.shutdown()
    sql = got[21]
    assert sql["resource"] == "UPDATE users SET pw = ? WHERE id IN ( ? )"
    assert sql["meta"]["sql.query"] == sql["resource"]
    assert "hunter2" not in str(sql)
    assert got[22]["resource"] == "SET"
