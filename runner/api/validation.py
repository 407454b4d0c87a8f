"""Every check a job request passes before anything is stored or queued.

Why here and not in the worker: a refused request must cost nothing and say at once what
is wrong (field, bound, what to do), and a job that is queued must be one a worker can
run. Content is checked by decoding it (PIL for images, PyAV for audio); a file name's
extension is never trusted, and the clip's duration always comes from the audio itself.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..probe import ProbeError, audio_duration
from ..workflow import WorkflowError, apply_params, available_inputs
from .settings import ServeSettings

TIERS = ("fast", "balanced", "hq")
PRIORITIES = {"P0": 0, "P1": 1, "P2": 2}


class RequestError(ValueError):
    """A refused request: HTTP status, a machine code, the field, one line for a human."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def invalid(field: str, message: str, code: str = "invalid") -> RequestError:
    return RequestError(422, code, message, field)


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def check_image(path: Path, settings: ServeSettings) -> ImageInfo:
    """Decode the whole image: text, a truncated JPEG or a decompression bomb is refused."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height, fmt = img.width, img.height, img.format or "?"
            if width * height > settings.max_image_pixels:
                raise invalid(
                    "image",
                    f"image is {width}x{height}; at most {settings.max_image_pixels} pixels are accepted, resize it",
                    "image_too_large",
                )
            img.load()  # a truncated file fails here, not later on a worker
    except UnidentifiedImageError:
        raise invalid(
            "image", "image is not a picture PIL can read; upload a JPEG, PNG or WebP portrait"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise invalid(
            "image", f"image cannot be decoded ({str(exc).splitlines()[0]}); upload an intact file"
        ) from None
    if min(width, height) < settings.min_image_side:
        raise invalid(
            "image",
            f"image is {width}x{height}; both sides must be at least {settings.min_image_side} px",
            "image_too_small",
        )
    return ImageInfo(width, height, fmt)


def check_audio(path: Path, settings: ServeSettings) -> float:
    """The clip's real duration in seconds, within the configured bounds."""
    try:
        seconds = audio_duration(path, exact=True)
    except ProbeError as exc:
        message = str(exc).replace(f"audio {path}: ", "audio: ", 1)
        raise invalid("audio", message) from None
    if not math.isfinite(seconds) or seconds < settings.min_audio_s:
        raise invalid(
            "audio",
            f"audio is {seconds:.2f} s long; at least {settings.min_audio_s:g} s is needed",
            "audio_too_short",
        )
    if seconds > settings.max_audio_s:
        raise invalid(
            "audio",
            f"audio is {seconds:.1f} s long; at most {settings.max_audio_s:g} s is accepted, split it",
            "audio_too_long",
        )
    return seconds


def template_names(settings: ServeSettings) -> list[str]:
    return sorted(p.name.removesuffix("_api.json") for p in settings.templates_dir.glob("*_api.json"))


def resolve_template(name: str | None, tier: str | None, settings: ServeSettings) -> str:
    """``sonic_lite_balanced`` as is; ``sonic_lite`` + tier -> ``sonic_lite_<tier>``."""
    names = template_names(settings)
    if tier is not None and tier not in TIERS:
        raise invalid("tier", f"tier {tier!r} is not one of {', '.join(TIERS)}")
    base = name or settings.default_template
    candidates = [base] if base in names else []
    if tier is not None:
        stem = base.rsplit("_", 1)[0] if base.rsplit("_", 1)[-1] in TIERS else base
        candidates = [f"{stem}_{tier}"] if f"{stem}_{tier}" in names else []
    if not candidates:
        raise invalid(
            "template", f"template {base!r} is unknown; known: {', '.join(names)}", "unknown_template"
        )
    return candidates[0]


def check_params(template: dict, params: dict[str, str]) -> dict:
    """Apply the request's template inputs to the graph: unknown names and wrong types are 422."""
    try:
        apply_params(template, params)
    except WorkflowError as exc:
        named = [k for k in params if f"parameter {k!r}" in str(exc)]  # the one the error is about
        field = next(iter(named), None) or next((k for k in params if k in str(exc)), None)
        raise invalid(field or "params", str(exc)) from None
    return params


def settable_inputs(template: dict) -> list[str]:
    return available_inputs(template)


def check_priority(value: str | None) -> int:
    if value in (None, ""):
        return 1
    text = str(value).strip().upper()
    if text not in PRIORITIES:
        raise invalid("priority", f"priority {value!r} is not one of P0, P1, P2")
    return PRIORITIES[text]


def check_webhook_url(url: str | None, settings: ServeSettings) -> str | None:
    """http(s) only, and never loopback / link-local / private addresses unless allowed (SSRF)."""
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise invalid("webhook_url", "webhook_url must be an http:// or https:// URL with a host")
    if settings.allow_private_webhooks:
        return url
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise invalid("webhook_url", f"webhook_url host {parsed.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            raise invalid(
                "webhook_url",
                f"webhook_url points at a non-public address ({address}); "
                "start serve with --allow-private-webhooks to allow it",
                "webhook_not_public",
            )
    return url
