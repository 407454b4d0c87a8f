"""What one ``serve`` deployment is configured with (flags of ``sonic-runner serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServeSettings:
    db_url: str = "sqlite:///sonic-data/jobs.sqlite"
    storage: str | None = None  # s3://bucket[/prefix] or a folder; None: ./sonic-data
    s3_endpoint: str | None = None
    broker_url: str | None = None  # None: the in-process worker (embedded default)
    pools: str | None = None  # fleet mode: the workers' --pools (None: 512,768,1024)
    auth: bool = True
    max_upload_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    min_image_side: int = 64
    min_audio_s: float = 0.5
    max_audio_s: float = 600.0
    output_url_expiry_s: int = 3600
    lease_s: float = 30.0  # an embedded worker renews its job's lease; others requeue it once it runs out
    cancel_wait_s: float = 10.0  # DELETE of a running job waits this long to answer with its end
    allow_private_webhooks: bool = False
    webhook_secret: str | None = None
    default_template: str = "sonic_lite_balanced"
    templates_dir: Path = field(
        default_factory=lambda: Path(__file__).resolve().parent.parent.parent / "workflows" / "api"
    )
    work_dir: Path = Path("sonic-data/work")
