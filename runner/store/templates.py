"""Templates registered with ``sonic-runner templates add``: saved workflows the API accepts by name.

Why in the job store's database: several ``serve`` replicas behind a load balancer must all
list and accept the same templates, and a template added on one machine must not be
missing on another. The shipped templates (``workflows/api/*_api.json``) stay files in
the package; a registered name may not shadow one of them.

A workflow is checked when it is added, so a bad file is refused at once with one line
rather than failing every job later: it must be API format, built with the Sonic nodes,
with a VideoEncode (or core SaveVideo) output, and with LoadImage.image and
LoadAudio.audio inputs for the API to fill in the client's portrait and speech.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from ..workflow import WorkflowError, find_inputs, is_link, load_workflow
from .job_store import JobStore
from .schema import templates as templates_t

TIERS = ("fast", "balanced", "hq")
#: Nodes every Sonic template has (the model, the face crop, the animation).
REQUIRED_NODES = ("SONIC_ModelLoader", "SONIC_PreData", "SONIC_Inference")
#: An output node that writes the video (ours, core ComfyUI's, VideoHelperSuite's).
OUTPUT_NODES = ("VideoEncode", "SaveVideo", "VHS_VideoCombine")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class TemplateError(ValueError):
    """A template name or workflow cannot be registered: one line saying what to do."""


@dataclass(frozen=True)
class TemplateRecord:
    name: str
    workflow: dict
    tier: str | None
    created_at: float
    updated_at: float


def tier_of(name: str) -> str | None:
    """``shop_intro_fast`` -> ``fast``; None when the name ends in no tier."""
    suffix = name.rsplit("_", 1)[-1]
    return suffix if "_" in name and suffix in TIERS else None


def check_name(name: str, shipped: set[str] | frozenset[str] = frozenset()) -> str:
    if not _NAME.match(name or ""):
        raise TemplateError(
            f"template name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    if name in shipped:
        raise TemplateError(f"template name {name!r} is a shipped template; choose another name")
    return name


def check_workflow(workflow: dict, source: str) -> dict:
    """Refuse a workflow the API could not fill in or that is not a Sonic render (one line)."""
    classes = {node.get("class_type") for node in workflow.values()}
    missing = [c for c in REQUIRED_NODES if c not in classes]
    if missing:
        raise TemplateError(
            f"workflow {source}: no {', '.join(missing)} node; register a workflow built with the Sonic nodes "
            "(saved with 'Save (API)')"
        )
    if not classes & set(OUTPUT_NODES):
        raise TemplateError(
            f"workflow {source}: no video output node ({' or '.join(OUTPUT_NODES)}); add one so the job saves an MP4"
        )
    for target, what in (("LoadImage.image", "portrait"), ("LoadAudio.audio", "speech clip")):
        found = find_inputs(workflow, target)
        node, _, field = target.partition(".")
        if not found:
            raise TemplateError(
                f"workflow {source}: no {node} node with an '{field}' input; the API puts the client's {what} there"
            )
        if all(is_link(workflow[nid]["inputs"][name]) for nid, name in found):
            raise TemplateError(
                f"workflow {source}: {target} is linked to another node; make it a plain value the API can set"
            )
    return workflow


def load_template_file(path: Path) -> dict:
    """Read and check a workflow file for ``templates add``."""
    try:
        workflow = load_workflow(path)
    except WorkflowError as exc:
        raise TemplateError(str(exc)) from None
    return check_workflow(workflow, str(path))


class Templates:
    """Add, read, list and remove registered templates in a ``JobStore``'s database."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._engine = store.engine

    def add(
        self,
        name: str,
        workflow: dict,
        *,
        tier: str | None = None,
        replace: bool = False,
        shipped: set[str] | frozenset[str] = frozenset(),
    ) -> TemplateRecord:
        """Register ``workflow`` as ``name`` (checked first); an existing name needs ``replace``."""
        check_name(name, shipped)
        check_workflow(workflow, name)
        named = tier_of(name)
        if tier is not None and tier not in TIERS:
            raise TemplateError(f"--tier {tier!r} is not one of {', '.join(TIERS)}")
        if named and tier and tier != named:
            raise TemplateError(f"template {name!r} ends in tier {named!r} but --tier says {tier!r}")
        tier = named or tier
        now = time.time()
        existing = self.get(name)
        if existing is not None and not replace:
            raise TemplateError(f"template {name!r} exists already; add --replace to replace it")
        row = {"name": name, "workflow": workflow, "tier": tier, "updated_at": now}
        stmt = self._store.dialect.insert(templates_t).values(**row, created_at=now)
        with self._engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=row))
        return TemplateRecord(name, workflow, tier, existing.created_at if existing else now, now)

    def get(self, name: str) -> TemplateRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(templates_t).where(templates_t.c.name == name)).first()
        return TemplateRecord(**dict(row._mapping)) if row else None

    def list(self) -> list[TemplateRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(templates_t).order_by(templates_t.c.name)).all()
        return [TemplateRecord(**dict(r._mapping)) for r in rows]

    def names(self) -> list[str]:
        with self._engine.connect() as conn:
            return [n for (n,) in conn.execute(select(templates_t.c.name).order_by(templates_t.c.name))]

    def remove(self, name: str) -> bool:
        """Unregister ``name``; jobs already queued keep their copy of the workflow."""
        with self._engine.begin() as conn:
            return conn.execute(delete(templates_t).where(templates_t.c.name == name)).rowcount == 1
