"""How the API reads JSON bodies: bounded in size and nesting, and every failure a 400.

Not a subclass of DRF's JSONParser on purpose: DRF reads `request.body` for those, and Django
caps that at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, right for forms) with an HTML 400, which is
too small for a batch of 10,000 events and the wrong answer for an API client. This parser reads
the stream itself, up to settings.API_MAX_BODY_BYTES.
"""
from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.utils import json

# Deeper than any request this API takes ({"events": [{"attributes": {...}}]}), far below the
# depth at which Python's JSON decoder (and every recursive walk after it) runs out of stack.
MAX_JSON_DEPTH = 32


def _too_big(size: int | None, limit: int) -> ParseError:
    said = f"is {size:,} bytes" if size is not None else "is larger than that"
    return ParseError(f"The request body {said}; the limit is {limit:,} bytes (API_MAX_BODY_BYTES). "
                      "Send fewer events per request.")


def _depth_exceeds(data, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node)
    return False


class BoundedJSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.API_MAX_BODY_BYTES
        request = parser_context.get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:  # refuse before reading a byte
            raise _too_big(declared, limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise _too_big(None, limit)
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text (byte {exc.start + 1})") from None
        except LookupError:
            raise ParseError(f"JSON parse error - unknown charset {encoding!r}; send UTF-8") from None
        try:
            data = json.loads(text, parse_constant=json.strict_constant)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested too deeply; at most {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested too deeply; at most {MAX_JSON_DEPTH} levels")
        return data
