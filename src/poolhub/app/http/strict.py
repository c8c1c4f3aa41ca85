"""Strict JSON at the edge: one decoder per body type, the same rules over HTTP and the WebSocket.

Litestar decodes a body to Python objects and then converts it in lax mode ("8" for an int, 0 for a bool),
whatever the Content-Type. `StrictRequest.json()` instead checks the media type (415), then decodes the
bytes straight into the handler's msgspec type in strict mode; Litestar passes the decoded Struct through.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

from poolhub.app.http.schemas.common import NO_CONTROL_PATTERN

MAX_JSON_DEPTH: Final = 32
_PATH = re.compile(r" - at (?:`key` in )?`\$\.?(?P<path>[^`]*)`$")
_CONTROL_MESSAGE = f"matching regex '{NO_CONTROL_PATTERN}'".replace("\\", "\\\\")


class BodyError(ValueError):
    """A body that does not decode: `field` is its JSON path without `$.` ("" for the whole body)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _depth_exceeds(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_depth(body: bytes | str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH; cheap unless the body has that many brackets."""
    raw = body.encode() if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:
        value = None
        deep = True
    except (msgspec.DecodeError, UnicodeDecodeError):
        return  # the typed decode names the problem
    else:
        deep = _depth_exceeds(value, MAX_JSON_DEPTH)
    if deep:
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


T = TypeVar("T")


_as_number = msgspec.json.Encoder(decimal_format="number")
_exact = msgspec.json.Decoder(float_hook=Decimal)


def _integral(value: Any) -> Any:
    """Integral JSON numbers written with a fraction or exponent (12.0, 1e2) as ints; the rest untouched."""
    if isinstance(value, Decimal):
        # adjusted() bounds the exponent first: 1e999999999 is integral too, but no int field holds it.
        if value.is_finite() and value.adjusted() < 19 and value == value.to_integral_value():
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _decode(decoder: msgspec.json.Decoder[T], body: bytes | str) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        # JSON (and the JSON Schema of the OpenAPI document) has one number type: 12.0 is the integer 12.
        # Only that is retried; "8" for an int or 0 for a bool stay refused.
        if "Expected `int" not in str(exc) or "got `float`" not in str(exc):
            raise
        raw = _exact.decode(body)
        return decoder.decode(_as_number.encode(_integral(raw)))


def decode_strict(decoder: msgspec.json.Decoder[T], body: bytes | str) -> T:
    """Decode `body` with `decoder` (strict types); raises BodyError naming the field."""
    check_depth(body)
    try:
        return _decode(decoder, body)
    except UnicodeDecodeError as exc:
        raise BodyError("the body is not valid UTF-8") from exc
    except RecursionError as exc:
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        field = match.group("path") if match else ""
        message = text[: match.start()] if match else text
        if _CONTROL_MESSAGE in message:
            message = "must not contain control characters (U+0000-U+001F, U+007F)"
        raise BodyError(f"{field}: {message}" if field else message, field) from exc
    except msgspec.DecodeError as exc:
        text = str(exc)
        if "utf-8" in text.lower():
            raise BodyError("the body is not valid UTF-8") from exc
        raise BodyError(f"the body is not valid JSON: {text}") from exc


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.count("/") == 1 and media.endswith("+json"))


_decoders: dict[object, msgspec.json.Decoder[Any]] = {}


def _decoder_for(request: Request[Any, Any, Any]) -> msgspec.json.Decoder[Any]:
    handler = request.route_handler
    decoder = _decoders.get(handler)
    if decoder is None:
        parameter = handler.parsed_fn_signature.parameters["data"]
        decoder = _decoders[handler] = msgspec.json.Decoder(parameter.annotation)
    return decoder


class StrictRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        state = self._connection_state
        if state.json is not Empty:
            return state.json
        body = await self.body()
        if not body:
            state.json = None
            return None
        if not is_json_media_type(self.headers.get("content-type", "")):
            raise HTTPException(
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail="the body must be JSON sent with Content-Type: application/json",
            )
        try:
            value = decode_strict(_decoder_for(self), body)
        except BodyError as exc:
            key = exc.field or "body"
            raise ValidationException(
                detail=f"invalid request body: {exc.message}", extra=[{"key": key, "message": exc.message}]
            ) from exc
        state.json = value
        return value
