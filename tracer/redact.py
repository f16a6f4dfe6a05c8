"""What never leaves the request: secret headers, sensitive query keys, SQL parameters
bound to sensitive-looking columns.

Names are judged as Django reads them, percent-decoded (`p%61ssword` is `password`), and
`;` separates pairs as `&` does (some servers and frameworks split on it). Header values
that carry pairs (a Referer's query string) are redacted like a query string.

Decisions about an SQL string are cached per string, so redacting a query's parameters
costs a dict lookup when nothing in it is sensitive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrftoken",
        "x-amz-security-token",
    }
)

_SENSITIVE = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api_?key|access_?key|private_?key|session_?(key|data)|"
    r"auth(?!ors?\b|or_|ored)|credential|signature|otp|salt|ssn|card_?(number|no)|cvv|csrf",
    re.IGNORECASE,
)


#: Header names that carry a session or a credential without saying "token" or "auth".
_SECRET_HEADER = re.compile(r"session|refresh|jwt|bearer|ticket|(?:^|[-_])sid(?:$|[-_])", re.I)


def is_sensitive(name: str) -> bool:
    return _SENSITIVE.search(name) is not None


def decoded(text: str) -> str:
    """`text` percent- and plus-decoded as Django decodes a query string; again while that
    changes it (a name encoded twice is still a secret's name), at most three times."""
    for _ in range(3):
        if "%" not in text and "+" not in text:
            break
        plain = unquote_plus(text, errors="replace")
        if plain == text:
            break
        text = plain
    return text


def _header_name(key: str) -> str | None:
    """The header name of a META key, or None for keys that are not headers."""
    if key.startswith("HTTP_"):
        return key[5:].replace("_", "-").lower()
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key.replace("_", "-").lower()
    return None


# Keyed by the META dict's keys, in order: one server sends the same kinds of request over
# and over, so a request costs a lookup and a step per header, not a step per META key.
# Bounded, since clients choose header names.
@lru_cache(maxsize=256)
def _headers_in(keys: tuple[str, ...]) -> tuple[tuple[str, str, bool], ...]:
    """(META key, header name, secret?) of each header among `keys`."""
    found = []
    for key in keys:
        name = _header_name(key)
        if name is not None:
            found.append((key, name, secret_header(name)))
    return tuple(found)


def secret_header(name: str) -> bool:
    """Whether the header `name` (lower case) carries a secret: its value is never kept."""
    plain = decoded(name).replace("-", "_")
    return name in SECRET_HEADERS or is_sensitive(plain) or _SECRET_HEADER.search(plain) is not None


def headers_from_meta(meta: Mapping[str, Any], extra_secret: frozenset[str] = frozenset()) -> dict:
    """Request headers from a WSGI/ASGI META dict, secrets replaced by a marker."""
    out = {}
    for key, name, secret in _headers_in(tuple(meta)):
        if (secret or name in extra_secret) and meta[key] != "":
            out[name] = REDACTED  # an empty one (the test client's Cookie) holds no secret
        elif secret or name in extra_secret:
            out[name] = ""
        else:
            value = str(meta[key])[:512]
            out[name] = header_value(value) if "=" in value else value
    return out


# Header values found to hold no secret: browsers send the same Accept… on every request.
# Only those are remembered (a value with a secret in it is never kept), and only so many.
_clean_values: dict[str, None] = {}


def header_value(value: str) -> str:
    """A header's value with the pairs it carries redacted: a URL's query string (Referer,
    Origin, Location…) or `name=value` pairs of its own."""
    if value in _clean_values:
        return value
    base, sep, rest = value.partition("?")
    out = base + sep + query_string(rest) if sep else query_string(value)
    if out == value and len(_clean_values) < 1024:
        _clean_values[value] = None
    return out


#: A word of every alternative in _SENSITIVE: a text holding none of them (and nothing
#: percent-encoded) holds no sensitive name, found with a few substring tests instead of
#: the regular expression (many times slower), on every request's query and headers.
_WORDS = ("pass", "pwd", "secret", "token", "key", "session", "auth", "credential")
_WORDS += ("signature", "otp", "salt", "ssn", "card", "cvv", "csrf")


def _may_be_sensitive(text: str) -> bool:
    if "%" in text:
        return True
    lower = text.lower()
    return any(word in lower for word in _WORDS)


_PAIRS = re.compile(r"([&;#])")
#: `name=` inside a value (a URL or form passed along in a parameter, like ?next=…).
_NESTED = re.compile(rf"(?:{_SENSITIVE.pattern})[\w.\-\[\]]*\s*=", re.IGNORECASE)


def query_string(qs: str) -> str:
    """The query string (or form body) with the values of sensitive-looking keys replaced,
    keys read as Django reads them (decoded); a value that carries such a pair of its own
    (`?next=/login%3Fpassword%3D…`) is replaced whole."""
    if not qs or not _may_be_sensitive(qs):
        return qs
    if not _SENSITIVE.search(qs) and ("%" not in qs or not _SENSITIVE.search(decoded(qs))):
        return qs
    parts = _PAIRS.split(qs)  # pairs at even indexes, their separators between
    for i in range(0, len(parts), 2):
        key, sep, value = parts[i].partition("=")
        if sep and (is_sensitive(decoded(key)) or _NESTED.search(decoded(value))):
            parts[i] = f"{key}{sep}{REDACTED}"
    return "".join(parts)


_TOKEN = re.compile(
    r"""(?P<ph>%s|%\((?P<named>\w+)\)s|\?)|"(?P<dq>[^"]+)"|`(?P<bq>[^`]+)`|'(?:[^']|'')*'|(?P<word>[A-Za-z_][\w$]*)"""
)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+\S+\s*\((?P<cols>[^)]*)\)\s*VALUES", re.IGNORECASE)


@lru_cache(maxsize=4096)
def sensitive_positions(sql: str) -> tuple[int, ...]:
    """Indexes of the placeholders in `sql` bound to a sensitive-looking column."""
    if not _SENSITIVE.search(sql):
        return ()
    insert = _INSERT.match(sql)
    columns = (
        [c.strip().strip('"`[]').rsplit(".", 1)[-1] for c in insert.group("cols").split(",")]
        if insert
        else []
    )
    positions = []
    last_ident = ""
    index = 0
    for match in _TOKEN.finditer(sql, insert.end() if insert else 0):
        if match.group("ph"):
            column = columns[index % len(columns)] if columns else last_ident
            if is_sensitive(column) or (match.group("named") and is_sensitive(match["named"])):
                positions.append(index)
            index += 1
        elif match.group("dq") or match.group("bq"):
            last_ident = (match.group("dq") or match.group("bq")).rsplit(".", 1)[-1]
        elif match.group("word") and sql[match.end() : match.end() + 1] != "(":
            word = match.group("word")
            if word.upper() not in _KEYWORDS:
                last_ident = word
    return tuple(positions)


_SEQUENCES = (tuple, list)

_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS",
        "NULL",
        "LIKE",
        "ILIKE",
        "BETWEEN",
        "AS",
        "ON",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "OUTER",
        "SET",
        "VALUES",
        "UPDATE",
        "INSERT",
        "INTO",
        "DELETE",
        "ORDER",
        "BY",
        "GROUP",
        "HAVING",
        "LIMIT",
        "OFFSET",
        "ASC",
        "DESC",
        "DISTINCT",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "ESCAPE",
        "RETURNING",
        "EXISTS",
        "TRUE",
        "FALSE",
    ]
)


def sql_params(sql: Any, params: Any) -> Any:
    """`params` with those bound to sensitive columns redacted (same shape: tuple or dict)."""
    # The usual case first, on every query: a tuple or list for SQL with nothing sensitive.
    if type(params) in _SEQUENCES and type(sql) is str and not sensitive_positions(sql):
        return params
    if not params:
        return params
    if isinstance(params, Mapping):
        return {k: (REDACTED if is_sensitive(str(k)) else v) for k, v in params.items()}
    if not isinstance(sql, str):
        return [REDACTED] * len(params) if isinstance(params, (list, tuple)) else REDACTED
    positions = sensitive_positions(sql)
    if not positions:
        return params
    values = list(params)
    for i in positions:
        if i < len(values):
            values[i] = REDACTED
    return values
