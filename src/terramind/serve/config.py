"""How ``terramind serve`` runs: :class:`ServeConfig` (paths, limits, token, CORS) and address checks.

No web framework is imported here, so the CLI can build the record in a base install.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServeConfig:
    """How a server runs: where jobs live, what it allows, who may call it.

    Attributes:
        work_dir: Folder of the jobs (their records, uploads and outputs survive a restart).
        model: Model name, for ``/v1/info``.
        weights: Weights as given (``hub``, ``random`` or a path), for ``/v1/info``.
        device: Device of the model.
        precision: Default ``precision`` of requests.
        token: Bearer token every route but the health checks and the page needs (None: no token).
        data_root: Folder whose files requests may name (``MOD_path``); None: no server-side paths.
        examples_dir: Folder of example tiles ``<MOD>/<name>.tif`` (None: no examples).
        max_upload_mb: Largest request body, in MiB.
        max_pixels: Largest scene, in pixels (width x height).
        max_tiles: Most tiles of one job.
        max_embed_pixels: Largest tile ``/v1/embed`` takes, in pixels.
        queue_size: Jobs that may wait.
        workers: Jobs that run at once (model calls still take turns).
        keep_hours: Hours finished jobs are kept.
        cors_origins: Origins allowed to call from a browser page elsewhere (empty: CORS off).
    """

    work_dir: Path
    model: str = "terramind_v1_base"
    weights: str = "hub"
    device: str = "cpu"
    precision: str = "auto"
    token: str | None = None
    data_root: Path | None = None
    examples_dir: Path | None = None
    max_upload_mb: float = 512.0
    max_pixels: int = 121_000_000  # one 10980 x 10980 Sentinel-2 tile at 10 m
    max_tiles: int = 4096
    max_embed_pixels: int = 1024 * 1024
    queue_size: int = 16
    workers: int = 1
    keep_hours: float = 24.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def limits(self) -> dict[str, Any]:
        """Return the request limits, as ``/v1/info`` shows them."""
        return {
            "max_upload_mb": self.max_upload_mb, "max_pixels": self.max_pixels, "max_tiles": self.max_tiles,
            "max_embed_pixels": self.max_embed_pixels, "queue_size": self.queue_size, "workers": self.workers,
            "keep_hours": self.keep_hours,
        }  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
