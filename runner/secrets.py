"""Host specifications and the redaction that keeps their secrets out of every file we write.

Hosts sit behind an authenticating proxy, so a host carries headers (bearer or
basic auth, API keys) and sometimes user:pass@ in its URL. Those values must
reach the host and nothing else: every secret met while parsing hosts is
registered here, and the journal, reports, logs, event streams and webhooks
pass their text through `redact()` and write only `HostSpec.safe_url`.

Hosts file: a JSON list (strings in the line syntax, or objects with url,
headers, name, max_resolution, vram_gb, token_env, basic_env) or text lines:

    https://gpu1.example.com name=gpu1 max_resolution=1024 vram_gb=80 token_env=GPU_TOKEN
    https://gpu2.example.com basic_env=GPU2_USERPASS header.X-Api-Key=env:GPU2_KEY
    # comments and blank lines are ignored

A header value "env:NAME" is read from the environment variable NAME.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Header names whose literal values are treated as secrets (values read from env always are).
_SECRET_HEADER = re.compile(r"auth|token|key|secret|pass|cookie|session|signature", re.IGNORECASE)
# Query parameters that commonly carry credentials in a URL.
_SECRET_QUERY = re.compile(r"token|key|secret|pass|auth|sig|credential", re.IGNORECASE)
# scheme://user:pass@host -> scheme://***@host (also user@ alone: it often is a token).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# "Authorization: Bearer abc" / "'Authorization': 'Basic abc'" in text such as a repr of headers.
_AUTH_HEADER = re.compile(
    r"(?P<name>(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?P<scheme>(?:bearer|basic|token)\s+)?(?P<value>[^\s'\",}]+)",
    re.IGNORECASE,
)
_QUERY_SECRET_IN_TEXT = re.compile(
    r"(?P<key>[?&][^=&\s]*(?:token|key|secret|pass|auth|sig|credential)[^=&\s]*=)(?P<value>[^&\s'\"#]+)",
    re.IGNORECASE,
)

_secrets: set[str] = set()
_lock = threading.Lock()


class HostSpecError(ValueError):
    """A host line or hosts file that cannot be used (one line, names the host and the fix)."""


def register_secret(value: str | None) -> None:
    """Remember a value that must never be written anywhere (plus its JSON-escaped form)."""
    if not value:
        return
    with _lock:
        _secrets.add(value)
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            _secrets.add(escaped)


def redact(text: Any) -> Any:
    """Text with every registered secret, URL userinfo, auth header value and credential query value masked.

    Non-strings are returned unchanged so callers can pass a field as it is.
    """
    if not isinstance(text, str) or not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{MASK}", text)
    return _QUERY_SECRET_IN_TEXT.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like structure (dicts, lists, strings) with every string redacted."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def safe_url(url: str) -> str:
    """The URL without userinfo and with credential query values masked: the only form we write."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:  # IPv6 literal
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:  # e.g. a port that is not a number: mask what we can
        return redact(url)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def host_label(name: str | None, url: str | None) -> str:
    """A host as a person reads it: its configured name with the safe URL, or the URL alone.

    The journal identifies a host by its safe URL; a name given in a hosts file (name=gpu1)
    is shown next to it. A name that is just part of the URL (the default, host:port) adds
    nothing and is left out.
    """
    url = redact(url) if url else ""
    name = redact(str(name)) if name else ""
    if not url:
        return name or "-"
    if not name or name in url:
        return url
    return f"{name} ({url})"


@dataclass
class HostSpec:
    """One ComfyUI host: where it is, how to authenticate, what it can take."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    max_resolution: int | None = None
    vram_gb: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.name:
            parts = urlsplit(self.url)
            self.name = parts.netloc.rpartition("@")[2] or self.safe_url

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    @property
    def label(self) -> str:
        """What a person reads: "gpu1 (https://gpu1.example.com)", or the safe URL when unnamed."""
        return host_label(self.name, self.safe_url)

    @property
    def base_url(self) -> str:
        """The URL to connect to: no userinfo (its credentials moved into an Authorization header)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))

    def __repr__(self) -> str:  # never show header values, even in a traceback or a debug print
        return (
            f"HostSpec(name={self.name!r}, url={self.safe_url!r}, headers={sorted(self.headers)}, "
            f"max_resolution={self.max_resolution}, vram_gb={self.vram_gb})"
        )


def add_host_options(parser: Any, hosts_file_help: str) -> None:
    """``--host`` (repeatable) and ``--hosts-file``: what ``parse_hosts`` reads (batch, worker)."""
    parser.add_argument(
        "--host",
        dest="hosts",
        action="append",
        default=[],
        metavar="URL",
        help="ComfyUI host 'URL [name=.. max_resolution=.. vram_gb=.. token_env=..]' (repeatable)",
    )
    parser.add_argument("--hosts-file", type=Path, help=hosts_file_help)


def parse_hosts(args_hosts: list[str] | None, hosts_file: Path | None = None) -> list[HostSpec]:
    """HostSpecs from --host arguments ("URL [key=value ...]") and an optional hosts file."""
    specs = [_parse_line(arg, f"--host {i + 1}") for i, arg in enumerate(args_hosts or [])]
    if hosts_file is not None:
        specs += _read_hosts_file(Path(hosts_file))
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise HostSpecError(f"host name {name!r} is used twice; give each host a distinct name=...")
    return specs


def _read_hosts_file(path: Path) -> list[HostSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HostSpecError(f"hosts file {path}: cannot read it ({exc.strerror or exc})") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HostSpecError(f"hosts file {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        specs = []
        for i, item in enumerate(items, 1):
            where = f"hosts file {path} entry {i}"
            if isinstance(item, str):
                specs.append(_parse_line(item, where))
            elif isinstance(item, dict):
                specs.append(_from_mapping(item, where))
            else:
                raise HostSpecError(f"{where}: expected a string or an object with 'url'")
        return specs
    specs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            specs.append(_parse_line(line, f"hosts file {path} line {lineno}"))
    return specs


def _parse_line(line: str, where: str) -> HostSpec:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise HostSpecError(f"{where}: {exc}; check the quotes") from None
    if not words:
        raise HostSpecError(f"{where}: empty host; give a URL such as http://127.0.0.1:8188")
    mapping: dict[str, Any] = {"url": words[0], "headers": {}}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq:
            raise HostSpecError(f"{where}: {_mask_word(word)!r} is not key=value")
        if key.lower().startswith("header."):
            mapping["headers"][key[len("header.") :]] = value
        else:
            mapping[key] = value
    return _from_mapping(mapping, where)


def _mask_word(word: str) -> str:
    return redact(word) if "=" not in word else word.partition("=")[0] + "=" + MASK


_KNOWN_KEYS = {"url", "headers", "name", "max_resolution", "vram_gb", "token_env", "basic_env"}


def _from_mapping(item: dict, where: str) -> HostSpec:
    unknown = set(item) - _KNOWN_KEYS
    if unknown:
        raise HostSpecError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(_KNOWN_KEYS))} "
            "or header.NAME=value"
        )
    url = str(item.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HostSpecError(
            f"{where}: {safe_url(url)!r} is not an http(s) URL; give e.g. http://127.0.0.1:8188"
        )
    headers = {
        str(k): _resolve_value(str(v), f"{where} header {k}") for k, v in (item.get("headers") or {}).items()
    }
    for name, value in headers.items():
        if _SECRET_HEADER.search(name):
            register_secret(value)
    if item.get("token_env"):
        token = _env(item["token_env"], where)
        headers["Authorization"] = f"Bearer {token}"
    if item.get("basic_env"):
        headers["Authorization"] = _basic(_env(item["basic_env"], where), where)
    if parts.password is not None or parts.username:
        register_secret(parts.password)
        userinfo = parts.netloc.rpartition("@")[0]
        register_secret(userinfo if parts.password else None)
        if "Authorization" not in headers and parts.password is not None:
            headers["Authorization"] = _basic(f"{parts.username}:{parts.password}", where)
    for name, value in headers.items():
        if name.lower() in ("authorization", "proxy-authorization"):
            register_secret(value)
            register_secret(value.partition(" ")[2])
    return HostSpec(
        url=url,
        headers=headers,
        max_resolution=_number(item.get("max_resolution"), int, "max_resolution", where),
        vram_gb=_number(item.get("vram_gb"), float, "vram_gb", where),
        name=str(item.get("name") or ""),
    )


def _resolve_value(value: str, where: str) -> str:
    if value.startswith("env:"):
        secret = _env(value[4:], where)
        register_secret(secret)
        return secret
    return value


def _env(name: str, where: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise HostSpecError(f"{where}: environment variable {name} is not set; export it before starting")
    register_secret(value)
    return value


def _basic(userpass: str, where: str) -> str:
    if ":" not in userpass:
        raise HostSpecError(f"{where}: basic auth needs 'user:password' in the variable")
    register_secret(userpass)
    register_secret(userpass.partition(":")[2])
    token = base64.b64encode(userpass.encode()).decode()
    register_secret(token)
    return f"Basic {token}"


def _number(value: Any, kind: type, key: str, where: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise HostSpecError(f"{where}: {key}={value!r} is not a number") from None
