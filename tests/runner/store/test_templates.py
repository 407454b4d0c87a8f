"""Registered templates in the job store: the same rows on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comfyui_sonic.runner.store import JobStore
from comfyui_sonic.runner.store.templates import TemplateError, Templates

WORKFLOW = json.loads(
    (Path(__file__).resolve().parents[3] / "workflows" / "api" / "sonic_lite_hq_api.json").read_text()
)


def test_add_get_replace_and_remove(store_url):
    with JobStore(store_url) as store:
        templates = Templates(store)
        first = templates.add("promo_hq", WORKFLOW)
        assert first.tier == "hq" and templates.names() == ["promo_hq"]
        with pytest.raises(TemplateError, match="exists already"):
            templates.add("promo_hq", WORKFLOW)
        changed = {**WORKFLOW, "7": {**WORKFLOW["7"], "inputs": {**WORKFLOW["7"]["inputs"], "crf": 30}}}
        templates.add("promo_hq", changed, replace=True)
        again = templates.get("promo_hq")
        assert again.workflow["7"]["inputs"]["crf"] == 30 and again.created_at == first.created_at
        with pytest.raises(TemplateError, match="ends in tier 'hq' but --tier says 'fast'"):
            templates.add("other_hq", WORKFLOW, tier="fast")
        assert templates.remove("promo_hq") and not templates.remove("promo_hq")
        assert templates.list() == []
    with JobStore(store_url) as reopened:  # (the migration is at head: nothing to do)
        assert Templates(reopened).get("promo_hq") is None
