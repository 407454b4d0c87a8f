"""`sonic-runner hosts`: is each ComfyUI host usable for our workflows, and how big is it?

One report per host, built only from ComfyUI's public routes: /system_stats
(version, VRAM of devices[0], the device ComfyUI runs on) and /object_info
(are our nodes installed; which weight files the SONIC_ModelLoader offers).
The same check serves the scheduler's health probe.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .client import ComfyClient, safe_url
from .host_errors import HostError, one_line

__all__ = ["REQUIRED_NODES", "HostReport", "check_host", "check_hosts", "model_files_from_object_info"]

REQUIRED_NODES = ("SONIC_ModelLoader", "SONIC_PreData", "SONIC_Inference", "LipSyncCorrect", "VideoEncode")
_GIB = 1024**3
_FILE_LIKE = re.compile(r"(/|\.[A-Za-z0-9]{1,16}$)")


@dataclass
class HostReport:
    """What one host said about itself. `error` is one line when something could not be checked."""

    url: str
    reachable: bool
    error: str | None = None
    comfyui_version: str | None = None
    nodes_present: dict[str, bool] = field(default_factory=dict)
    model_files: list[str] = field(default_factory=list)
    vram_free_gb: float | None = None
    vram_total_gb: float | None = None

    @property
    def missing_nodes(self) -> list[str]:
        return [name for name, present in self.nodes_present.items() if not present]

    @property
    def ok(self) -> bool:
        """Reachable, fully answered, and every one of our nodes is installed."""
        return self.reachable and self.error is None and bool(self.nodes_present) and not self.missing_nodes

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        data["missing_nodes"] = self.missing_nodes
        return data


def _combo_options(spec: Any) -> list:
    """Choices of a combo input in either V1 form: [[a, b], {...}] or ["COMBO", {"options": [a, b]}]."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return []
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return []


def model_files_from_object_info(object_info: dict, node: str = "SONIC_ModelLoader") -> list[str]:
    """The weight files a loader offers: its combo choices that look like file or folder names."""
    sections = ((object_info.get(node) or {}).get("input") or {}).values()
    files: list[str] = []
    for section in sections:
        if not isinstance(section, dict):
            continue
        for spec in section.values():
            for option in _combo_options(spec):
                if not isinstance(option, str) or (option.startswith("(") and option.endswith(")")):
                    continue  # "(diffusers folder ...)"-style labels are choices, not files
                if _FILE_LIKE.search(option) and option not in files:
                    files.append(option)
    return files


def _spec_fields(spec_or_url: Any, headers: dict[str, str] | None) -> tuple[str, dict[str, str], bool | str]:
    if isinstance(spec_or_url, str):
        return spec_or_url, dict(headers or {}), True
    url = spec_or_url.url
    merged = dict(getattr(spec_or_url, "headers", None) or {})
    merged.update(headers or {})
    return url, merged, getattr(spec_or_url, "verify", True)


def check_host(spec_or_url: Any, headers: dict[str, str] | None = None, timeout: float = 5) -> HostReport:
    """Ask one host (a URL or a HostSpec with .url/.headers) for version, nodes, weights and VRAM. Never raises."""
    url, all_headers, verify = _spec_fields(spec_or_url, headers)
    report = HostReport(url=getattr(spec_or_url, "safe_url", None) or safe_url(url), reachable=False)
    client = ComfyClient(url, headers=all_headers, timeout=timeout, verify=verify)
    try:
        try:
            stats = client.system_stats()
        except HostError as exc:
            report.error = exc.message
            return report
        report.reachable = True
        system = stats.get("system") or {}
        report.comfyui_version = system.get("comfyui_version")
        devices = stats.get("devices") or []
        if devices:
            free, total = devices[0].get("vram_free"), devices[0].get("vram_total")
            report.vram_free_gb = round(free / _GIB, 2) if isinstance(free, (int, float)) else None
            report.vram_total_gb = round(total / _GIB, 2) if isinstance(total, (int, float)) else None
        try:
            info = client.object_info()
        except HostError as exc:
            report.error = one_line(f"object_info: {exc.message}")
            return report
        report.nodes_present = {name: name in info for name in REQUIRED_NODES}
        report.model_files = model_files_from_object_info(info)
        return report
    except Exception as exc:  # a malformed answer must not stop a fleet check
        report.error = one_line(f"unexpected answer from host: {type(exc).__name__}: {exc}")
        return report
    finally:
        client.close()


def check_hosts(specs: list[Any], timeout: float = 5, workers: int = 8) -> list[HostReport]:
    """check_host for many hosts in parallel, in the given order."""
    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(specs)))) as pool:
        return list(pool.map(lambda s: check_host(s, timeout=timeout), specs))
