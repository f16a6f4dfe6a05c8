"""Request bodies, recorded only when switched on (`config.capture_body` bytes; 0 = never).

A body is kept only when it is small (under the cap and Django's own upload limit), not a
multipart upload, and text. Form and JSON fields with sensitive-looking names are
redacted (names read decoded, as Django reads them: `p%61ssword=` is a password); any
other body that mentions a sensitive-looking name, plain or percent-encoded, is left out.
Reading `request.body` first is safe: Django keeps the bytes and the view reads the same.
"""

from __future__ import annotations

import json
from typing import Any

from djtrace import redact

_FORM = "application/x-www-form-urlencoded"


def capture(request: Any, limit: int) -> dict[str, Any]:
    """Request-info fields for the body: `body` and `body_size`, or why it was left out."""
    meta = request.META
    try:
        size = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return {}
    if size <= 0:
        return {}
    out: dict[str, Any] = {"body_size": size}
    content_type = str(meta.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    reason = _skip_reason(size, content_type, limit)
    if reason:
        out["body_omitted"] = reason
        return out
    try:
        text = request.body.decode(request.encoding or "utf-8")
    except UnicodeDecodeError:
        out["body_omitted"] = "binary"
        return out
    except Exception:  # the client went away mid-upload: never raise into the request
        out["body_omitted"] = "unreadable"
        return out
    body = redact_body(text, content_type)
    if body is None:
        out["body_omitted"] = "mentions a sensitive-looking field"
    else:
        out["body"] = body
    return out


def _skip_reason(size: int, content_type: str, limit: int) -> str | None:
    from django.conf import settings

    if size > limit:
        return f"larger than the {limit}-byte cap"
    if content_type.startswith("multipart/"):
        return "multipart (uploads are never recorded)"
    max_memory = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if max_memory is not None and size > max_memory:
        return "larger than DATA_UPLOAD_MAX_MEMORY_SIZE"  # reading it would raise in the view
    return None


def redact_body(text: str, content_type: str) -> str | None:
    """The body with sensitive fields replaced, or None when it cannot be made safe."""
    if content_type == _FORM:
        return redact.query_string(text)
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(_redact_json(data), ensure_ascii=False, separators=(",", ":"))
    return None if redact.is_sensitive(text) or redact.is_sensitive(redact.decoded(text)) else text


def redact_request(request: dict[str, Any]) -> dict[str, Any]:
    """A recorded request's query, headers and body redacted again, as they would be now:
    for traces that come from elsewhere (`djtrace import` of a file an older djtrace, or
    anyone, wrote)."""
    out = dict(request)
    if isinstance(out.get("query"), str):
        out["query"] = redact.query_string(out["query"])
    headers = out.get("headers")
    if isinstance(headers, dict):
        out["headers"] = {
            name: (
                redact.REDACTED
                if redact.secret_header(str(name).lower()) and value != ""
                else redact.header_value(value)
                if isinstance(value, str) and "=" in value
                else value
            )
            for name, value in headers.items()
        }
        headers = out["headers"]
    if isinstance(out.get("body"), str):
        content_type = headers.get("content-type") if isinstance(headers, dict) else None
        kind = str(content_type or "").split(";")[0].strip().lower()
        text = redact_body(out["body"], kind)
        if text is None:
            del out["body"]
            out["body_omitted"] = "mentions a sensitive-looking field"
        else:
            out["body"] = text
    return out


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (redact.REDACTED if redact.is_sensitive(redact.decoded(str(k))) else _redact_json(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value
