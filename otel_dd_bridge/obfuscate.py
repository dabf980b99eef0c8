"""Resource and tag obfuscation, as the Datadog Agent applies it before the intake.

In agent mode the trace-agent obfuscates every span it receives (``pkg/trace/agent/obfuscate.go``
with the obfuscators of ``pkg/obfuscate``). In agentless mode nothing stands between us and the
intake, so :func:`obfuscate_chunks` does the same work in-process: raw SQL literals, Redis values
and Memcached payloads never leave the process, and APM stats grouped by resource keep the
Agent's cardinality.

What is done, per span, with the Agent's **default** configuration (``apm_config.obfuscation``
defaults; ``sql_obfuscation_mode: ""``, i.e. the legacy tokenizer, no ``features``):

* every ``meta`` value except a fixed list of known-safe keys and keys starting with ``_``:
  a value that looks like a credit card number (12-16 digits, spaces and dashes allowed, a known
  IIN prefix; **no** Luhn check, the Agent's default) becomes ``?``;
* type ``sql`` / ``cassandra`` with a non-empty resource: the resource goes through the SQL
  obfuscator (literals, numbers, ``NULL``/booleans, bind values, escape sequences -> ``?``,
  consecutive ``?`` and ``(?), (?)`` groups collapsed, comments, ``AS alias`` and ``;`` removed,
  quoted identifiers unquoted, whitespace normalized) and meta ``sql.query`` is set to the result.
  ``db.statement`` / ``db.query.text`` meta, when present, are obfuscated too (reusing the result
  when equal to the resource). A query the tokenizer rejects (unterminated string or comment,
  stray ``}``, ``!`` at the end, an illegal octal ``09``...) becomes ``Non-parsable SQL query`` in
  the resource and in every one of those tags: the raw query is never kept;
* type ``redis`` / ``valkey``: the resource is quantized to at most three upper-cased command
  names (``SET GET ...``), and ``redis.raw_command`` / ``valkey.raw_command`` keep the command
  but lose the arguments that carry values (``SET k ?``, ``AUTH ?``, ``HSET k f ?``...);
* type ``memcached``: ``memcached.command`` is emptied (``keep_command: false``);
* type ``mongodb``: every JSON value in ``mongodb.query`` becomes ``"?"`` (keys kept);
* type ``elasticsearch`` / ``opensearch``: the same for ``elasticsearch.body`` and
  ``opensearch.body``;
* type ``web`` / ``http``: user info (``user:password@``) is removed from ``http.url``; query
  strings and path digits are kept (both options are off by default).

Beyond the Agent (``all_statements``, on by default; the ``obfuscate_all_statements`` setting),
so that no stored value leaves the process even where the Agent would forward it:

* type ``memcached``: the resource (translation puts ``db.statement`` there) and
  ``db.statement`` / ``db.query.text`` keep only the command line before the first ``\\r\\n``,
  trimmed, which is what the Agent's memcached obfuscator keeps with ``keep_command: true``
  (``set k 0 60 5\\r\\nvalue`` -> ``set k 0 60 5``; key, flags, expiry and length stay);
* type ``redis`` / ``valkey``: ``db.statement`` / ``db.query.text`` get the value hiding of
  ``redis.raw_command`` (``SET k ?``, ``AUTH ?``).

Where libdatadog (the Rust mini-agent on this machine) differs, this module follows the Go Agent;
each difference is named in a ``libdatadog differs`` comment below and in the README.

Costs: SQL and Redis results are cached per resource string in a bounded LRU
(:data:`DEFAULT_CACHE_MAX_BYTES`), so a repeated statement costs one dict look-up.
:func:`obfuscate_chunks` never raises; a span whose obfuscation fails unexpectedly gets the safe
placeholder (``Non-parsable SQL query`` for SQL, ``?`` for other tags), never its raw value.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from otel_dd_bridge.model import DDSpan, TraceChunk
from otel_dd_bridge.normalize import MAX_RESOURCE_LEN, truncate_meta_value, truncate_utf8

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE_MAX_BYTES",
    "NON_PARSABLE_SQL",
    "Obfuscator",
    "SQLObfuscationError",
    "SQLTokenizer",
    "is_card_number",
    "obfuscate_chunks",
    "obfuscate_json",
    "obfuscate_memcached",
    "obfuscate_redis",
    "obfuscate_url",
    "quantize_redis",
    "remove_all_redis_args",
]

NON_PARSABLE_SQL = "Non-parsable SQL query"
"""What the Agent writes in place of a query its tokenizer rejects (resource and ``sql.query``)."""

DEFAULT_CACHE_MAX_BYTES = 5_000_000
"""Approximate memory of each result cache (SQL, Redis): the Agent's default
``apm_config.obfuscation.cache.max_size``. Entries cost their input and output characters plus
a fixed overhead; the least recently used go first."""

SAFE_PLACEHOLDER = "?"

TAG_SQL_QUERY = "sql.query"
TAG_DB_STATEMENT = "db.statement"
TAG_DB_QUERY_TEXT = "db.query.text"
TAG_REDIS_RAW = "redis.raw_command"
TAG_VALKEY_RAW = "valkey.raw_command"
TAG_MEMCACHED = "memcached.command"
TAG_MONGO = "mongodb.query"
TAG_ES_BODY = "elasticsearch.body"
TAG_OPENSEARCH_BODY = "opensearch.body"
TAG_HTTP_URL = "http.url"

_SQL_QUERY_TAGS = (TAG_SQL_QUERY, TAG_DB_STATEMENT, TAG_DB_QUERY_TEXT)
_STATEMENT_TAGS = (TAG_DB_STATEMENT, TAG_DB_QUERY_TEXT)


class SQLObfuscationError(ValueError):
    """The SQL tokenizer rejected the query (the Agent then reports it as non-parsable)."""


# --------------------------------------------------------------------------------------------
# SQL: tokenizer
# --------------------------------------------------------------------------------------------
# Token kinds. Punctuation tokens use the character itself as their kind (one-character
# strings); every other kind is a longer name, so the two never collide.
EOF = "<eof>"
LEX_ERROR = "LexError"
ID = "ID"
LIMIT = "Limit"
NULL = "Null"
STRING = "String"
DOUBLE_QUOTED_STRING = "DoubleQuotedString"
DOLLAR_QUOTED_STRING = "DollarQuotedString"
NUMBER = "Number"
BOOLEAN_LITERAL = "BooleanLiteral"
VALUE_ARG = "ValueArg"
LIST_ARG = "ListArg"
COMMENT = "Comment"
VARIABLE = "Variable"
SAVEPOINT = "Savepoint"
PREPARED_STATEMENT = "PreparedStatement"
ESCAPE_SEQUENCE = "EscapeSequence"
NULL_SAFE_EQUAL = "NullSafeEqual"
LE = "LE"
GE = "GE"
NE = "NE"
NOT = "Not"
AS = "As"
COLON_CAST = "ColonCast"
SELECT = "Select"
UPDATE = "Update"
DELETE = "Delete"
# Markers the filters use for tokens they dropped or replaced.
FILTERED_GROUPABLE = "FilteredGroupable"
FILTERED_GROUPABLE_PAREN = "FilteredGroupableParenthesis"
FILTERED = "Filtered"
FILTERED_BRACKETED_ID = "FilteredBracketedIdentifier"

# Upper-cased words the tokenizer reports as keywords; only some matter to the filters, the
# others are kept so that an identifier named like a keyword is treated as the Agent does.
_KEYWORDS: dict[str, str] = {
    "NULL": NULL,
    "TRUE": BOOLEAN_LITERAL,
    "FALSE": BOOLEAN_LITERAL,
    "SAVEPOINT": SAVEPOINT,
    "LIMIT": LIMIT,
    "AS": AS,
    "ALTER": "Alter",
    "CREATE": "Create",
    "GRANT": "Grant",
    "REVOKE": "Revoke",
    "COMMIT": "Commit",
    "BEGIN": "Begin",
    "TRUNCATE": "Truncate",
    "DROP": "Drop",
    "SELECT": SELECT,
    "FROM": "From",
    "UPDATE": UPDATE,
    "DELETE": DELETE,
    "INSERT": "Insert",
    "INTO": "Into",
    "JOIN": "Join",
}

_SINGLE_CHAR_TOKENS = frozenset("=,;()+*&|^[]")
# Go's unicode.IsSpace: Python's str.isspace() also accepts the four ASCII separators below.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def _is_space(c: str) -> bool:
    return c.isspace() and c not in _NOT_GO_SPACE


def _is_leading_letter(c: str) -> bool:
    return c.isalpha() or c == "_" or c == "@"


def _is_letter(c: str) -> bool:
    return c.isalpha() or c == "_" or c == "@" or c == "#"


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _digit_val(c: str) -> int:
    if "0" <= c <= "9":
        return ord(c) - 48
    if "a" <= c <= "f":
        return ord(c) - 87
    if "A" <= c <= "F":
        return ord(c) - 55
    return 16


def _valid_after_not(c: str) -> bool:
    return c in "(`'\"+-" or _is_space(c) or _is_letter(c) or _is_digit(c)


class SQLTokenizer:
    """Splits a query into ``(kind, text)`` tokens the way the Agent's legacy SQL tokenizer does.

    Not a real SQL lexer: it knows just enough (strings, numbers, comments, operators, bind
    parameters) for the filters to find the literals. ``literal_escapes`` says whether a
    backslash inside a string is an ordinary character (``True``) or escapes the next one.
    Errors set :attr:`error` and return :data:`LEX_ERROR`.
    """

    __slots__ = ("_s", "_n", "_p", "_start", "curlys", "literal_escapes", "seen_escape", "error")

    def __init__(self, sql: str, literal_escapes: bool = False) -> None:
        self._s = sql
        self._n = len(sql)
        self._p = 0  # index of the look-ahead character (Go's lastChar)
        self._start = 0
        self.curlys = 0
        self.literal_escapes = literal_escapes
        self.seen_escape = False
        self.error: str | None = None

    def _ch(self) -> str:
        return self._s[self._p] if self._p < self._n else EOF

    def _fail(self, msg: str) -> tuple[str, str]:
        if self.error is None:
            self.error = f"at position {self._p}: {msg}"
        return LEX_ERROR, self._s[self._start : self._p]

    def scan(self) -> tuple[str, str]:
        """Return the next token as ``(kind, text)``; ``(EOF, "")`` at the end."""
        s, n = self._s, self._n
        p = self._p
        while p < n and _is_space(s[p]):
            p += 1
        self._p = self._start = p
        if p >= n:
            return EOF, ""
        ch = s[p]
        if _is_leading_letter(ch):
            return self._scan_identifier()
        if _is_digit(ch):
            return self._scan_number(False)
        self._p = p + 1
        nxt = self._ch()
        if ch == ":":
            if nxt == ":":
                self._p += 1
                return COLON_CAST, "::"
            if nxt != EOF and _is_space(nxt):
                return ":", ":"
            if nxt != "=":
                return self._scan_bind_var()
            return ":", ":"
        if ch == "~":
            if nxt == "*":
                self._p += 1
                return "~", "~*"
            return "~", "~"
        if ch == "?" or ch in _SINGLE_CHAR_TOKENS:
            return ch, ch
        if ch == ".":
            if _is_digit(nxt):
                return self._scan_number(True)
            return ".", "."
        if ch == "/":
            if nxt == "/":
                self._p += 1
                return self._scan_line_comment()
            if nxt == "*":
                self._p += 1
                return self._scan_block_comment()
            return "/", "/"
        if ch == "-":
            if nxt == "-":
                self._p += 1
                return self._scan_line_comment()
            if nxt == ">" or _is_digit(nxt):
                # The Agent reads "->" and "-5" alike as a number (generic DBMS), so "a -> b"
                # loses its operator to a "?" exactly as it does there.
                kind, text = self._scan_number(False)
                return kind, text
            if nxt == "." and self._p + 1 < n and _is_digit(s[self._p + 1]):
                self._p += 1
                return self._scan_number(True)
            return "-", "-"
        if ch == "#":
            # The Agent consumes the character after '#' before looking for the end of line,
            # so "#\n" comments out the following line too.
            if nxt != EOF:
                self._p += 1
            return self._scan_line_comment()
        if ch == "<":
            if nxt == ">":
                self._p += 1
                return NE, "<>"
            if nxt == "=":
                self._p += 1
                if self._ch() == ">":
                    self._p += 1
                    return NULL_SAFE_EQUAL, "<=>"
                return LE, "<="
            return "<", "<"
        if ch == ">":
            if nxt == "=":
                self._p += 1
                return GE, ">="
            return ">", ">"
        if ch == "!":
            if nxt == "=":
                self._p += 1
                return NE, "!="
            if nxt == "~":
                self._p += 1
                if self._ch() == "*":
                    self._p += 1
                    return NE, "!~*"
                return NE, "!~"
            if nxt != EOF and _valid_after_not(nxt):
                return NOT, "!"
            return self._fail(f"unexpected char {nxt!r} after '!'")
        if ch == "'":
            # libdatadog differs: it reads X'FF' / b'01' as one literal ("?"); the Go tokenizer
            # sees the word X, then a string ("X ?").
            return self._scan_string("'", STRING)
        if ch == '"':
            return self._scan_string('"', DOUBLE_QUOTED_STRING)
        if ch == "`":
            return self._scan_string("`", ID)
        if ch == "%":
            if nxt == "(":
                return self._scan_variable_identifier()
            if nxt != EOF and _is_letter(nxt):
                self._p += 1  # a format parameter such as %s
                return VARIABLE, s[self._start : self._p]
            return "%", "%"
        if ch == "$":
            if _is_digit(nxt):
                kind, text = self._scan_number(False)
                if kind == LEX_ERROR:
                    return self._fail("invalid number")
                return PREPARED_STATEMENT, text
            return self._scan_dollar_quoted_string()
        if ch == "{":
            if self._start == 0 or self.curlys > 0:
                # A top-level ODBC escape such as {call proc(?)} keeps its braces.
                self.curlys += 1
                return "{", "{"
            return self._scan_escape_sequence()
        if ch == "}":
            if self.curlys == 0:
                return self._fail("unexpected byte '}'")
            self.curlys -= 1
            return "}", "}"
        return self._fail(f"unexpected byte {ch!r}")

    def _scan_identifier(self) -> tuple[str, str]:
        s, n = self._s, self._n
        p = self._p + 1
        while p < n:
            c = s[p]
            if _is_letter(c) or _is_digit(c) or c == "." or c == "*":
                p += 1
            else:
                break
        self._p = p
        text = s[self._start : p]
        return _KEYWORDS.get(text.upper(), ID), text

    def _scan_variable_identifier(self) -> tuple[str, str]:
        # at '(' after '%': skip to ')' then require one letter (%(name)s)
        s, n = self._s, self._n
        p = self._p + 1
        while p < n and s[p] != ")":
            p += 1
        p = min(p + 1, n)
        self._p = p
        if p >= n or not _is_letter(s[p]):
            return self._fail("invalid character after variable identifier")
        self._p = p + 1
        return VARIABLE, s[self._start : self._p]

    def _scan_mantissa(self, base: int) -> None:
        s, n = self._s, self._n
        p = self._p
        while p < n and _digit_val(s[p]) < base:
            p += 1
        self._p = p

    def _scan_number(self, seen_decimal_point: bool) -> tuple[str, str]:
        if seen_decimal_point:
            self._scan_mantissa(10)
            self._scan_exponent()
            return NUMBER, self._s[self._start : self._p]
        if self._ch() == "0":
            self._p += 1
            c = self._ch()
            if c in ("x", "X"):
                self._p += 1
                self._scan_mantissa(16)
                return NUMBER, self._s[self._start : self._p]
            seen_decimal_digit = False
            self._scan_mantissa(8)
            if self._ch() in ("8", "9"):
                seen_decimal_digit = True
                self._scan_mantissa(10)
            if self._ch() not in (".", "e", "E"):
                if seen_decimal_digit:
                    # an illegal octal literal such as 09: the Agent gives up on the query
                    return self._fail("invalid octal number")
                return NUMBER, self._s[self._start : self._p]
        else:
            self._scan_mantissa(10)
        if self._ch() == ".":
            self._p += 1
            self._scan_mantissa(10)
        self._scan_exponent()
        return NUMBER, self._s[self._start : self._p]

    def _scan_exponent(self) -> None:
        if self._ch() in ("e", "E"):
            self._p += 1
            if self._ch() in ("+", "-"):
                self._p += 1
            self._scan_mantissa(10)

    def _scan_string(self, delim: str, kind: str) -> tuple[str, str]:
        s, n = self._s, self._n
        p = self._p
        out: list[str] = []
        while True:
            if p >= n:
                self._p = p
                return self._fail("unexpected EOF in string")
            c = s[p]
            p += 1
            if c == delim:
                if p < n and s[p] == delim:
                    p += 1  # a doubled delimiter is the delimiter itself
                else:
                    break
            elif c == "\\":
                self.seen_escape = True
                if not self.literal_escapes:
                    if p >= n:
                        self._p = p
                        return self._fail("unexpected EOF in string")
                    c = s[p]
                    p += 1
            out.append(c)
        self._p = p
        text = "".join(out)
        if (kind == ID and not text) or not text or all(_is_space(c) for c in text):
            # empty or blank: keep the delimiters so the query stays valid
            return kind, delim + delim
        return kind, text

    def _scan_dollar_quoted_string(self) -> tuple[str, str]:
        kind, tag = self._scan_string("$", STRING)
        if kind == LEX_ERROR:
            return kind, tag
        delim = tag if tag == "$$" else "$" + tag + "$"
        s, n = self._s, self._n
        p = self._p
        got = 0
        while True:
            if p >= n:
                self._p = p
                return self._fail("unexpected EOF in dollar-quoted string")
            c = s[p]
            p += 1
            if c == delim[got]:
                got += 1
                if got == len(delim):
                    break
                continue
            # like the Agent, a broken partial match does not re-test the current character
            got = 0
        self._p = p
        return DOLLAR_QUOTED_STRING, ""

    def _scan_escape_sequence(self) -> tuple[str, str]:
        s, n = self._s, self._n
        p = self._p
        while p < n and s[p] != "}":
            p += 1
        if p >= n:
            self._p = p
            return self._fail("unexpected EOF in escape sequence")
        self._p = p + 1
        return ESCAPE_SEQUENCE, s[self._start : self._p]

    def _scan_bind_var(self) -> tuple[str, str]:
        s, n = self._s, self._n
        p = self._p
        if p >= n or not (_is_letter(s[p]) or _is_digit(s[p])):
            return self._fail("bind variables should start with letters or digits")
        while p < n and (_is_letter(s[p]) or _is_digit(s[p]) or s[p] == "."):
            p += 1
        self._p = p
        return VALUE_ARG, s[self._start : p]

    def _scan_line_comment(self) -> tuple[str, str]:
        s, n = self._s, self._n
        p = self._p
        while p < n:
            c = s[p]
            p += 1
            if c == "\n":
                break
        self._p = p
        return COMMENT, s[self._start : p]

    def _scan_block_comment(self) -> tuple[str, str]:
        end = self._s.find("*/", self._p)
        if end < 0:
            self._p = self._n
            return self._fail("unexpected EOF in comment")
        self._p = end + 2
        return COMMENT, self._s[self._start : self._p]


# --------------------------------------------------------------------------------------------
# SQL: filters (discard -> replace -> grouping), as chained by the Agent's attemptObfuscation
# --------------------------------------------------------------------------------------------
_REPLACED_KINDS = frozenset(
    {
        DOLLAR_QUOTED_STRING,
        STRING,
        NUMBER,
        NULL,
        VARIABLE,
        PREPARED_STATEMENT,
        BOOLEAN_LITERAL,
        ESCAPE_SEQUENCE,
        "?",
    }
)
_GROUPABLE = frozenset({FILTERED_GROUPABLE, FILTERED_GROUPABLE_PAREN})
_SUBQUERY_START = frozenset({SELECT, DELETE, UPDATE, ID})
_GROUP_NEUTRAL = frozenset({",", "(", ")"})


def _mark_groupable(kind: str) -> str:
    return FILTERED_GROUPABLE_PAREN if kind == "(" else FILTERED_GROUPABLE


def _attempt_sql(tok: SQLTokenizer) -> str:
    """One obfuscation pass over ``tok``; raises :class:`SQLObfuscationError` on a lex error."""
    out: list[str] = []
    last = ""
    group_filter = 0
    group_multi = 0
    while True:
        kind, text = tok.scan()
        if kind == EOF:
            break
        if kind == LEX_ERROR:
            raise SQLObfuscationError(tok.error or "lex error")
        buf: str | None = text

        # discard: comments, ';', "AS alias" (keep_sql_alias is off by default)
        if last == FILTERED_BRACKETED_ID and kind != "]":
            if kind != ID:
                raise SQLObfuscationError(f"expected identifier in bracketed alias, got {kind}")
            kind, buf = FILTERED_BRACKETED_ID, None
        elif last == AS or last == FILTERED_BRACKETED_ID:
            kind, buf = (FILTERED_BRACKETED_ID if kind == "[" else FILTERED), None
        elif kind == COMMENT:
            kind, buf = FILTERED, None
        elif kind == ";":
            kind, buf = FILTERED_GROUPABLE, None
        elif kind == AS:
            buf = None

        # replace: literals become '?'
        if last == SAVEPOINT:
            kind, buf = FILTERED_GROUPABLE, "?"
        elif last == "=" and kind == DOUBLE_QUOTED_STRING:
            kind, buf = FILTERED_GROUPABLE, "?"
        elif kind in _REPLACED_KINDS:
            kind, buf = FILTERED_GROUPABLE, "?"

        # grouping: "?, ?, ?" -> "?" and "(?), (?)" -> "(?)"
        if (last == "(" and kind in _GROUPABLE) or (kind == "(" and group_multi > 0):
            group_multi += 1
        if group_multi > 0 and last == FILTERED_GROUPABLE_PAREN and kind in _SUBQUERY_START:
            # a dropped '(' turned out to open a nested query: cancel grouping, restore it
            group_filter = group_multi = 0
            buf = "( " + (buf or "")
        elif kind in _GROUPABLE:
            group_filter += 1
            if group_filter > 1:
                kind, buf = FILTERED_GROUPABLE, None
        elif group_filter > 0 and (kind == "," or kind == "?"):
            kind, buf = FILTERED_GROUPABLE, None
        elif group_multi > 1:
            kind, buf = _mark_groupable(kind), None
        elif kind not in _GROUP_NEUTRAL:
            group_filter = group_multi = 0

        if buf is not None:
            if out and kind != "," and not (kind == "=" and last == ":"):
                out.append(" ")
            out.append(buf)
        last = kind
    if not out:
        # libdatadog differs: it never fails; an empty or comment-only query gives "" there, an
        # unterminated string "?". The Go Agent rejects both (-> "Non-parsable SQL query").
        raise SQLObfuscationError("result is empty")
    return "".join(out)


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _LRU:
    """A bounded LRU map whose bound is the approximate memory of its entries (callers lock).

    Each entry costs the characters of its key and value plus :data:`_ENTRY_OVERHEAD`, the way
    the Agent's obfuscation cache counts bytes (``apm_config.obfuscation.cache.max_size``).
    """

    __slots__ = ("_data", "_max", "_cost")

    def __init__(self, max_cost: int) -> None:
        self._data: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._max = max_cost
        self._cost = 0

    def get(self, key: str) -> tuple[str, bool] | None:
        v = self._data.get(key)
        if v is not None:
            self._data.move_to_end(key)
        return v

    def put(self, key: str, value: tuple[str, bool]) -> None:
        cost = len(key) + len(value[0]) + _ENTRY_OVERHEAD
        if cost > self._max:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self._cost -= len(key) + len(old[0]) + _ENTRY_OVERHEAD
        self._data[key] = value
        self._cost += cost
        while self._cost > self._max:
            k, v = self._data.popitem(last=False)
            self._cost -= len(k) + len(v[0]) + _ENTRY_OVERHEAD

    @property
    def cost(self) -> int:
        return self._cost

    def __len__(self) -> int:
        return len(self._data)


_ENTRY_OVERHEAD = 100  # dict slot, tuple and two str headers, roughly, in bytes


# --------------------------------------------------------------------------------------------
# Redis / Valkey
# --------------------------------------------------------------------------------------------
_REDIS_TRUNCATION_MARK = "..."
_REDIS_MAX_COMMANDS = 3
_REDIS_COMPOUND = frozenset({"CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "SCRIPT"})
_GO_SPACE = " \t\n\v\f\r\x85\xa0"


def _compact_spaces(s: str) -> str:
    # only ' ' runs are compacted (tabs and newlines stay), then ' ' trimmed at both ends
    while "  " in s:
        s = s.replace("  ", " ")
    return s.strip(" ")


def quantize_redis(query: str) -> str:
    """The Agent's Redis resource: up to three upper-cased command names, ``...`` if more.

    Commands are one per line; ``CLIENT``/``CLUSTER``/``COMMAND``/``CONFIG``/``DEBUG``/``SCRIPT``
    keep their sub-command. A word ending in ``...`` (a tracer's truncation mark) is skipped and
    flags the result as truncated.
    """
    rest = _compact_spaces(query)
    parts: list[str] = []
    truncated = False
    count = 0
    while rest and count < _REDIS_MAX_COMMANDS:
        raw, _, rest = rest.partition("\n")
        line = raw.strip(" ")
        if not line:
            continue
        args = line.split(" ", 2)
        if args[0].endswith(_REDIS_TRUNCATION_MARK):
            truncated = True
            continue
        cmd = args[0].upper()
        if cmd in _REDIS_COMPOUND and len(args) > 1:
            if args[1].endswith(_REDIS_TRUNCATION_MARK):
                truncated = True
                continue
            cmd += " " + args[1].upper()
        parts.append(cmd)
        count += 1
        truncated = False
    if count == _REDIS_MAX_COMMANDS or truncated:
        parts.append("...")
    return " ".join(parts).strip(" ")


class _RedisTokenizer:
    """Splits a (multi-line) Redis command string into commands and arguments, quote-aware."""

    __slots__ = ("data", "off", "ch", "done", "in_command")

    def __init__(self, data: str) -> None:
        self.data = data.strip(_GO_SPACE)
        self.off = -1
        self.ch = ""
        self.done = False
        self.in_command = True

    def _next(self) -> None:
        self.off += 1
        if self.off < len(self.data):
            self.ch = self.data[self.off]
        else:
            self.done = True

    def _unread(self) -> None:
        if self.off >= 1:
            self.off -= 1
            self.ch = self.data[self.off]

    def _skip_space(self) -> None:
        while self.ch in (" ", "\t") or (self.ch == "\r" and not self.done):
            self._next()
            if self.done:
                break
        if self.ch == "\n":
            self.in_command = True
        else:
            self._unread()

    def scan(self) -> tuple[str, bool, bool]:
        """Return ``(token, is_command, done)``."""
        return self._scan_command() if self.in_command else self._scan_arg()

    def _scan_command(self) -> tuple[str, bool, bool]:
        buf: list[str] = []
        started = False
        while True:
            self._next()
            if self.done:
                return "".join(buf), True, True
            c = self.ch
            if c == " ":
                if started:
                    self.in_command = False
                    self._skip_space()
                    return "".join(buf), True, self.done
                self._skip_space()
            elif c == "\n":
                return "".join(buf), True, self.done
            else:
                buf.append(c)
            started = True

    def _scan_arg(self) -> tuple[str, bool, bool]:
        buf: list[str] = []
        quoted = False
        escape = False
        while True:
            self._next()
            if self.done:
                return "".join(buf), False, True
            c = self.ch
            if c == "\\":
                buf.append("\\")
                if not escape:
                    escape = True
                    continue
            elif c == "\n":
                if not quoted:
                    self.in_command = True
                    return "".join(buf), False, self.done
                buf.append("\n")
            elif c == '"':
                buf.append('"')
                if not escape:
                    quoted = not quoted
            elif c == " ":
                if not quoted:
                    self._skip_space()
                    return "".join(buf), False, self.done
                buf.append(" ")
            else:
                buf.append(c)
            escape = False


def _redis_arg_n(args: list[str], n: int) -> None:
    if len(args) > n:
        args[n] = "?"


def _redis_args_step(args: list[str], start: int, step: int) -> None:
    for i in range(start + step - 1, len(args), step):
        args[i] = "?"


_REDIS_ARG2 = frozenset(
    "APPEND GETSET LPUSHX GEORADIUSBYMEMBER RPUSHX SET SETNX SISMEMBER ZRANK ZREVRANK ZSCORE".split()
)
_REDIS_ARG3 = frozenset(
    "HSET HSETNX LREM LSET SETBIT SETEX PSETEX SETRANGE ZINCRBY SMOVE RESTORE".split()
)
_REDIS_AFTER_KEY = frozenset("GEOHASH GEOPOS GEODIST LPUSH RPUSH SREM ZREM SADD".split())
_ZADD_FLAGS = frozenset({"NX", "XX", "CH", "INCR"})


def _obfuscate_redis_cmd(cmd: str, args: list[str]) -> str:
    if not args:
        return cmd
    up = cmd.upper()
    if up == "AUTH":
        args = ["?"]
    elif up in _REDIS_ARG2:
        _redis_arg_n(args, 1)
    elif up in _REDIS_ARG3:
        _redis_arg_n(args, 2)
    elif up == "LINSERT":
        _redis_arg_n(args, 3)
    elif up in _REDIS_AFTER_KEY:
        if len(args) > 1:
            args = [args[0], "?"]
    elif up == "GEOADD":
        _redis_args_step(args, 1, 3)
    elif up == "HMSET":
        _redis_args_step(args, 1, 2)
    elif up in ("MSET", "MSETNX"):
        _redis_args_step(args, 0, 2)
    elif up == "CONFIG":
        if args[0].upper() == "SET":
            _redis_arg_n(args, 2)
    elif up == "BITFIELD":
        n = 0
        for i, a in enumerate(args):
            if a.upper() == "SET":
                n = i
            if n > 0 and i - n == 3:
                args[i] = "?"
                break
    elif up == "ZADD":
        i = 0
        for i in range(len(args)):
            if i == 0 or args[i] in _ZADD_FLAGS:
                continue
            break
        _redis_args_step(args, i, 2)
    return cmd + " " + " ".join(args)


def obfuscate_redis(command: str) -> str:
    """``redis.raw_command`` as the Agent keeps it: commands kept, value arguments ``?``.

    Commands are separated by newlines; quoted arguments may contain spaces and newlines.
    Which argument is a value depends on the command (``SET k ?``, ``HSET k f ?``,
    ``LPUSH k ?``, ``MSET k ? k ?``, ``AUTH ?``...); unknown commands are kept whole, as the
    Agent does.
    """
    t = _RedisTokenizer(command)
    lines: list[str] = []
    cmd = ""
    args: list[str] = []
    started = False
    while True:
        tok, is_cmd, done = t.scan()
        if is_cmd:
            if started and cmd:
                lines.append(_obfuscate_redis_cmd(cmd, args))
            cmd, args, started = tok, [], True
        else:
            args.append(tok)
        if done:
            lines.append(_obfuscate_redis_cmd(cmd, args))
            break
    return "\n".join(lines)


def remove_all_redis_args(command: str) -> str:
    """The ``remove_all_args`` variant (off by default): every argument becomes one ``?``."""
    words = command.split()
    if not words:
        return ""
    cmd, args = words[0], words[1:]
    if not args:
        return cmd
    up = cmd.upper()
    if up == "BITFIELD":
        out = [cmd, "?"]
        for a in args:
            if a.upper() in ("SET", "GET", "INCRBY"):
                out += [a, "?"]
        return " ".join(out)
    if up == "CONFIG" and args[0].upper() in ("GET", "SET", "RESETSTAT", "REWRITE"):
        return f"{cmd} {args[0]} ?"
    return f"{cmd} ?"


# --------------------------------------------------------------------------------------------
# Memcached, URLs, JSON bodies, credit cards
# --------------------------------------------------------------------------------------------
def obfuscate_memcached(command: str, keep_command: bool = False) -> str:
    """``memcached.command``: emptied by default; with ``keep_command`` the first line only."""
    if not keep_command:
        return ""
    return _memcached_command_line(command)


def _memcached_command_line(command: str) -> str:
    """What the Agent keeps of a Memcached command with ``keep_command``: the text before the
    first ``\\r\\n`` (a storage command's data block follows it), surrounding whitespace
    trimmed. A command without data (``get k``, ``incr k 1``) is kept whole."""
    return command.split("\r\n", 1)[0].strip(_GO_SPACE)


def obfuscate_url(url: str) -> str:
    """``http.url`` with the Agent's defaults: ``user:password@`` removed, the rest kept.

    The Agent re-serializes the parsed URL; for a URL without user info that is the identity,
    so we only touch the authority when it holds an ``@``. (The Agent's optional
    ``remove_query_string`` / ``remove_paths_with_digits`` are off by default and not done.)
    """
    scheme_end = url.find("://")
    if scheme_end <= 0:
        return url
    auth_start = scheme_end + 3
    auth_end = len(url)
    for sep in "/?#":
        i = url.find(sep, auth_start)
        if 0 <= i < auth_end:
            auth_end = i
    at = url.rfind("@", auth_start, auth_end)
    if at < 0:
        return url
    return url[:auth_start] + url[at + 1 :]


class _JSONError(Exception):
    pass


class _JSONObfuscator:
    """Rewrites a JSON document keeping its keys and structure, every value ``"?"``.

    Whitespace outside strings is dropped. On malformed input the output so far is returned
    followed by ``...`` (the Agent accepts partial output: the values seen are already hidden).
    """

    __slots__ = ("s", "n", "p", "out")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self.p = 0
        self.out: list[str] = []

    def run(self) -> str:
        try:
            self._ws()
            self._value()
            self._ws()
            if self.p < self.n:
                raise _JSONError("data after top-level value")
        except _JSONError:
            return "".join(self.out) + "..."
        return "".join(self.out)

    def _ws(self) -> None:
        s, n, p = self.s, self.n, self.p
        while p < n and s[p] in " \t\n\r":
            p += 1
        self.p = p

    def _peek(self) -> str:
        if self.p >= self.n:
            raise _JSONError("unexpected end")
        return self.s[self.p]

    def _value(self) -> None:
        c = self._peek()
        if c == "{":
            self._object()
        elif c == "[":
            self._array()
        else:
            if not (c == '"' or c == "-" or _is_digit(c) or c in "tfn"):
                raise _JSONError("not a value")
            self.out.append('"?"')
            self._literal(c)

    def _object(self) -> None:
        self.out.append("{")
        self.p += 1
        self._ws()
        if self._peek() == "}":
            self.p += 1
            self.out.append("}")
            return
        while True:
            self._ws()
            if self._peek() != '"':
                raise _JSONError("expected key")
            start = self.p
            self._string()
            self.out.append(self.s[start : self.p])
            self._ws()
            if self._peek() != ":":
                raise _JSONError("expected ':'")
            self.p += 1
            self.out.append(":")
            self._ws()
            self._value()
            self._ws()
            c = self._peek()
            self.p += 1
            if c == ",":
                self.out.append(",")
                continue
            if c == "}":
                self.out.append("}")
                return
            raise _JSONError("expected ',' or '}'")

    def _array(self) -> None:
        self.out.append("[")
        self.p += 1
        self._ws()
        if self._peek() == "]":
            self.p += 1
            self.out.append("]")
            return
        while True:
            self._ws()
            self._value()
            self._ws()
            c = self._peek()
            self.p += 1
            if c == ",":
                self.out.append(",")
                continue
            if c == "]":
                self.out.append("]")
                return
            raise _JSONError("expected ',' or ']'")

    def _literal(self, c: str) -> None:
        if c == '"':
            self._string()
            return
        for word in ("true", "false", "null"):
            if c == word[0]:
                if self.s.startswith(word, self.p):
                    self.p += len(word)
                    return
                raise _JSONError("bad literal")
        self._number()

    def _string(self) -> None:
        s, n = self.s, self.n
        p = self.p + 1
        while p < n:
            c = s[p]
            if c == '"':
                self.p = p + 1
                return
            if c == "\\":
                if p + 1 >= n:
                    break
                e = s[p + 1]
                if e == "u":
                    hexpart = s[p + 2 : p + 6]
                    if len(hexpart) < 4 or any(_digit_val(h) > 15 for h in hexpart):
                        raise _JSONError("bad \\u escape")
                    p += 6
                    continue
                if e not in '"\\/bfnrt':
                    raise _JSONError("bad escape")
                p += 2
                continue
            if c < " ":
                raise _JSONError("control character in string")
            p += 1
        raise _JSONError("unterminated string")

    def _number(self) -> None:
        s, n = self.s, self.n
        p = self.p
        if p < n and s[p] == "-":
            p += 1
        if p >= n or not _is_digit(s[p]):
            raise _JSONError("bad number")
        if s[p] == "0":
            p += 1
        else:
            while p < n and _is_digit(s[p]):
                p += 1
        if p < n and s[p] == ".":
            p += 1
            if p >= n or not _is_digit(s[p]):
                raise _JSONError("bad fraction")
            while p < n and _is_digit(s[p]):
                p += 1
        if p < n and s[p] in "eE":
            p += 1
            if p < n and s[p] in "+-":
                p += 1
            if p >= n or not _is_digit(s[p]):
                raise _JSONError("bad exponent")
            while p < n and _is_digit(s[p]):
                p += 1
        self.p = p


def obfuscate_json(body: str) -> str:
    """A MongoDB query or Elasticsearch/OpenSearch body with every value replaced by ``"?"``."""
    if not body:
        return body
    return _JSONObfuscator(body).run()


# Keys whose values are known not to be card numbers (the Agent's list); keys starting with '_'
# are skipped too.
_CC_SAFE_KEYS = frozenset(
    {
        "_sample_rate",
        "_sampling_priority_v1",
        "account_id",
        "aws_account",
        "error",
        "error.msg",
        "error.type",
        "error.stack",
        "env",
        "graphql.field",
        "graphql.query",
        "graphql.type",
        "graphql.operation.name",
        "grpc.code",
        "grpc.method",
        "grpc.request",
        "http.status_code",
        "http.method",
        "runtime-id",
        "out.host",
        "out.port",
        "sampling.priority",
        "span.type",
        "span.name",
        "service.name",
        "service",
        "sql.query",
        "version",
        "databricks_job_id",
        "databricks_job_run_id",
        "databricks_task_run_id",
        "config.spark_app_startTime",
        "config.spark_databricks_job_parentRunId",
    }
)


_CARD_FIRST_CHARS = frozenset("0123456789 -")


def _card_prefix(n: int) -> tuple[bool, bool]:
    """``(maybe, yes)``: could ``n`` grow into a known IIN, is it one already."""
    if n > 699999:
        return False, False
    if n < 10:
        if n in (1, 4):
            return False, True
        return (n in (2, 3, 5, 6)), False
    if n < 100:
        if 34 <= n <= 39 or 51 <= n <= 55 or n in (62, 65):
            return False, True
        if n in (30, 63, 64, 50, 60) or 22 <= n <= 27 or 56 <= n <= 58 or 60 <= n <= 69:
            return True, False
    if n < 1000:
        if 300 <= n <= 305 or 644 <= n <= 649 or n in (309, 636):
            return False, True
        if (
            352 <= n <= 358
            or n in (501, 601)
            or 222 <= n <= 272
            or 500 <= n <= 509
            or 560 <= n <= 589
            or 600 <= n <= 699
        ):
            return True, False
    if n < 10000:
        if 3528 <= n <= 3589 or n in (5019, 6011):
            return False, True
        if 2221 <= n <= 2720 or 5000 <= n <= 5099 or 5600 <= n <= 5899 or 6000 <= n <= 6999:
            return True, False
    if n < 100000:
        if 22210 <= n <= 27209 or 50000 <= n <= 50999 or 56000 <= n <= 58999 or 60000 <= n <= 69999:
            return True, False
    if n < 1000000:
        if (
            222100 <= n <= 272099
            or 500000 <= n <= 509999
            or 560000 <= n <= 589999
            or 600000 <= n <= 699999
        ):
            return False, True
    return False, False


def _luhn(digits: list[int]) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(value: str, luhn: bool = False) -> bool:
    """Whether ``value`` may be a payment card number: 12-16 digits (spaces and dashes
    ignored, nothing else allowed) starting with a known IIN; optionally Luhn-checked."""
    if len(value) < 12:
        return False
    c0 = value[0]
    if c0 not in " -" and not _is_digit(c0):
        return False
    prefix = 0
    count = 0
    found = False
    digits: list[int] = []
    for c in value:
        if c in " -":
            continue
        if not _is_digit(c):
            return False
        count += 1
        d = ord(c) - 48
        digits.append(d)
        if not found:
            prefix = prefix * 10 + d
            maybe, yes = _card_prefix(prefix)
            if yes:
                found = True
            elif not maybe:
                return False
        if count > 16:
            return False
    if count < 12 or not found:
        return False
    return _luhn(digits) if luhn else True


# --------------------------------------------------------------------------------------------
# The span obfuscator
# --------------------------------------------------------------------------------------------
class Obfuscator:
    """Obfuscates Datadog spans in place with the Agent's default configuration.

    Thread-safe (one lock around the caches and the SQL escape mode). Keeps, like the Agent's
    obfuscator, one piece of state besides the caches: whether SQL backslashes are escapes.
    It starts as "escapes" and flips when a query only parses the other way; later queries are
    then read that way first.

    Args:
        cache_max_bytes: approximate memory of each LRU result cache (SQL resources, Redis
            resources, Redis statements); 0 disables caching.
        credit_cards: look for card numbers in meta values (the Agent's default: on).
        all_statements: also strip what the Agent itself forwards (the
            ``obfuscate_all_statements`` setting, default on): a Memcached resource and
            Memcached ``db.statement`` / ``db.query.text`` keep only the command line before
            the first ``\\r\\n`` (the stored data after it is dropped), and Redis/Valkey
            ``db.statement`` / ``db.query.text`` hide values as ``redis.raw_command`` does.
            Off: exactly the Agent's defaults, which leave those raw.
    """

    def __init__(
        self,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        credit_cards: bool = True,
        all_statements: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._sql_cache = _LRU(cache_max_bytes)
        self._redis_cache = _LRU(cache_max_bytes)
        # Redis statements (all_statements): a third cache, as the text often equals the
        # resource but its result differs from the quantized resource.
        self._redis_stmt_cache = _LRU(cache_max_bytes)
        self._literal_escapes = False
        self.credit_cards = credit_cards
        self.all_statements = all_statements

    # -- SQL ---------------------------------------------------------------------------------
    def obfuscate_sql(self, query: str) -> str:
        """The obfuscated query; raises :class:`SQLObfuscationError` when the Agent would report
        it as non-parsable."""
        out, ok = self._sql(query)
        if not ok:
            raise SQLObfuscationError(out)
        return out

    def _sql(self, query: str) -> tuple[str, bool]:
        """``(obfuscated, True)`` or ``(error message, False)``, cached."""
        with self._lock:
            hit = self._sql_cache.get(query)
            if hit is not None:
                return hit
            lesc = self._literal_escapes
        result = self._sql_uncached(query, lesc)
        with self._lock:
            self._sql_cache.put(query, result)
        return result

    def _sql_uncached(self, query: str, lesc: bool) -> tuple[str, bool]:
        if _has_surrogates(query):
            return "invalid UTF-8 encoding", False
        tok = SQLTokenizer(query, lesc)
        try:
            return _attempt_sql(tok), True
        except SQLObfuscationError as e:
            if not tok.seen_escape:
                return str(e), False
            err = str(e)
        # it failed after a backslash: try again reading backslashes the other way, and keep
        # that reading for later queries if it works (as the Agent does)
        try:
            out = _attempt_sql(SQLTokenizer(query, not lesc))
        except SQLObfuscationError:
            return err, False
        with self._lock:
            self._literal_escapes = not lesc
        return out, True

    def _quantize_redis(self, resource: str) -> str:
        with self._lock:
            hit = self._redis_cache.get(resource)
        if hit is not None:
            return hit[0]
        out = quantize_redis(resource)
        with self._lock:
            self._redis_cache.put(resource, (out, True))
        return out

    def _redis_statement(self, statement: str) -> str:
        with self._lock:
            hit = self._redis_stmt_cache.get(statement)
        if hit is not None:
            return hit[0]
        out = obfuscate_redis(statement)
        with self._lock:
            self._redis_stmt_cache.put(statement, (out, True))
        return out

    # -- spans -------------------------------------------------------------------------------
    def obfuscate_span(self, span: DDSpan) -> None:
        """Obfuscate one span in place (may raise on a bug; see :meth:`obfuscate_chunks`)."""
        meta = span.meta
        if self.credit_cards and meta:
            # libdatadog differs: it checks only the `card.number` tag, and with Luhn on.
            # A cheap comprehension first (a card number has 12+ characters and starts with a
            # digit, space or dash), so most tags never reach the per-character check.
            first = _CARD_FIRST_CHARS
            for k in [k for k, v in meta.items() if len(v) >= 12 and v[0] in first]:
                if k not in _CC_SAFE_KEYS and k[:1] != "_" and is_card_number(meta[k]):
                    meta[k] = SAFE_PLACEHOLDER
        t = span.type
        if t == "sql" or t == "cassandra":
            self._obfuscate_sql_span(span)
        elif t == "redis" or t == "valkey":
            span.resource = self._quantize_redis(span.resource)
            tag = TAG_REDIS_RAW if t == "redis" else TAG_VALKEY_RAW
            # libdatadog differs: raw commands are obfuscated only when
            # DD_APM_OBFUSCATION_REDIS_ENABLED is set; the Go Agent's default is on.
            v = meta.get(tag)
            if v:
                meta[tag] = obfuscate_redis(v)
            if self.all_statements:
                # Beyond the Agent (Go and libdatadog forward these raw): the statement tags
                # carry the same values as the raw command, so they lose them the same way.
                self._obfuscate_statement_tags(meta, self._redis_statement)
        elif t == "memcached":
            # libdatadog differs: off unless DD_APM_OBFUSCATION_MEMCACHED_ENABLED, and then it
            # keeps the command line; the Go Agent empties the tag by default.
            if meta.get(TAG_MEMCACHED):
                meta[TAG_MEMCACHED] = obfuscate_memcached(meta[TAG_MEMCACHED])
            if self.all_statements:
                # Beyond the Agent (Go and libdatadog leave the resource and statement tags
                # alone): what the Agent keeps of a command with keep_command on, the line
                # before the stored data. An empty result falls back to the span name, as the
                # normalizer does for an empty resource.
                span.resource = _memcached_command_line(span.resource) or span.name
                self._obfuscate_statement_tags(meta, _memcached_command_line)
        elif t == "web" or t == "http":
            # libdatadog differs: with both HTTP options off it leaves the URL untouched.
            v = meta.get(TAG_HTTP_URL)
            if v:
                meta[TAG_HTTP_URL] = obfuscate_url(v)
        elif t == "mongodb":
            # libdatadog differs: JSON obfuscation (mongodb, elasticsearch, opensearch) is off
            # in the mini-agent; the Go Agent enables all three by default.
            v = meta.get(TAG_MONGO)
            if v:
                meta[TAG_MONGO] = truncate_meta_value(obfuscate_json(v))
        elif t == "elasticsearch" or t == "opensearch":
            for tag in (TAG_ES_BODY, TAG_OPENSEARCH_BODY):
                v = meta.get(tag)
                if v:
                    meta[tag] = truncate_meta_value(obfuscate_json(v))

    @staticmethod
    def _obfuscate_statement_tags(meta: dict[str, str], obfuscate: Callable[[str], str]) -> None:
        """``db.statement`` / ``db.query.text`` through ``obfuscate`` (computed once when both
        hold the same text), cut to the tag limit as the Agent's truncator would."""
        done: dict[str, str] = {}
        for tag in _STATEMENT_TAGS:
            v = meta.get(tag)
            if v:
                out = done.get(v)
                if out is None:
                    out = done[v] = truncate_meta_value(obfuscate(v))
                meta[tag] = out

    def _obfuscate_sql_span(self, span: DDSpan) -> None:
        raw = span.resource
        meta = span.meta
        if not raw:
            for tag in _SQL_QUERY_TAGS:
                v = meta.get(tag)
                if v:
                    meta[tag] = self._sql_or_placeholder(v)
            return
        out, ok = self._sql(raw)
        if not ok:
            logger.debug("SQL query could not be obfuscated: %s", out)
            out = NON_PARSABLE_SQL
        # The Agent truncates after obfuscating ("a=1" grows to "a = ?"), with its usual limits.
        span.resource = truncate_utf8(out, MAX_RESOURCE_LEN)
        out = truncate_meta_value(out)
        # The Go Agent has always set sql.query to the obfuscated resource and so does
        # libdatadog. (The newest Go Agent only rewrites a sql.query the client sent and lets
        # the intake derive it otherwise; the intake ends up with the same value.)
        meta[TAG_SQL_QUERY] = out
        # libdatadog differs: it leaves db.statement / db.query.text raw; the Go Agent
        # obfuscates them (the same result when they hold the resource).
        for tag in (TAG_DB_STATEMENT, TAG_DB_QUERY_TEXT):
            v = meta.get(tag)
            if v:
                meta[tag] = out if v == raw else self._sql_or_placeholder(v)

    def _sql_or_placeholder(self, query: str) -> str:
        out, ok = self._sql(query)
        return truncate_meta_value(out) if ok else NON_PARSABLE_SQL

    def obfuscate_chunks(self, chunks: Sequence[TraceChunk]) -> None:
        """Obfuscate every span of ``chunks`` in place. Never raises.

        A span whose obfuscation fails unexpectedly (a bug, not a bad query) gets safe values
        instead of raw ones: resource and SQL tags ``Non-parsable SQL query`` for SQL types,
        the resource ``?`` otherwise with the tags of its type blanked to ``?``.
        """
        for chunk in chunks:
            try:
                spans = list(chunk.spans)
            except Exception:  # noqa: BLE001 - not a chunk: nothing in it to obfuscate or send
                logger.debug("obfuscation skipped an object that is not a chunk", exc_info=True)
                continue
            for span in spans:
                try:
                    self.obfuscate_span(span)
                except Exception:  # noqa: BLE001 - export() must never raise
                    logger.debug("obfuscation failed for a span; safe values used", exc_info=True)
                    _make_safe(span, self.all_statements)


_TYPE_TAGS: dict[str, tuple[str, ...]] = {
    "redis": (TAG_REDIS_RAW,),
    "valkey": (TAG_VALKEY_RAW,),
    "memcached": (TAG_MEMCACHED,),
    "mongodb": (TAG_MONGO,),
    "elasticsearch": (TAG_ES_BODY, TAG_OPENSEARCH_BODY),
    "opensearch": (TAG_ES_BODY, TAG_OPENSEARCH_BODY),
    "web": (TAG_HTTP_URL,),
    "http": (TAG_HTTP_URL,),
}


_ALL_STATEMENTS_TYPES = frozenset({"redis", "valkey", "memcached"})


def _make_safe(span: DDSpan, all_statements: bool = True) -> None:
    try:
        if span.type in ("sql", "cassandra"):
            span.resource = NON_PARSABLE_SQL
            for tag in _SQL_QUERY_TAGS:
                if tag in span.meta or tag == TAG_SQL_QUERY:
                    span.meta[tag] = NON_PARSABLE_SQL
            return
        tags = _TYPE_TAGS.get(span.type)
        if tags is not None:
            if span.type not in ("web", "http"):
                span.resource = SAFE_PLACEHOLDER
            if all_statements and span.type in _ALL_STATEMENTS_TYPES:
                tags = tags + _STATEMENT_TAGS
            for tag in tags:
                if tag in span.meta:
                    span.meta[tag] = SAFE_PLACEHOLDER
    except Exception:  # noqa: BLE001 - a span too broken to fix: leave it, never raise
        logger.debug("could not apply safe obfuscation values", exc_info=True)


_default: Obfuscator | None = None
_default_lock = threading.Lock()


def _default_obfuscator() -> Obfuscator:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Obfuscator()
    return _default


def obfuscate_chunks(
    chunks: Sequence[TraceChunk], obfuscator: Obfuscator | None = None
) -> None:
    """Obfuscate every span of ``chunks`` in place, as the Datadog Agent would. Never raises.

    Args:
        chunks: the translated chunks of one export batch.
        obfuscator: the instance (caches, SQL escape mode) to use; the process-wide default
            (caches of :data:`DEFAULT_CACHE_MAX_BYTES`) when ``None``.
    """
    try:
        (obfuscator or _default_obfuscator()).obfuscate_chunks(chunks)
    except Exception:  # noqa: BLE001 - export() must never raise
        logger.debug("obfuscation failed", exc_info=True)

