"""Node resource usage for heartbeats (psutil; each call is a few cheap syscalls)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

from halswarm.models import Resources

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """CPU %, memory and disk in use, sampled at heartbeat time."""

    def __init__(self, disk_path: Path) -> None:
        self.disk_path = disk_path
        psutil.cpu_percent(interval=None)  # primes the counter: the first call always says 0.0

    def __call__(self) -> Resources:
        """A fresh sample (CPU is averaged since the previous call)."""
        mem = psutil.virtual_memory()
        try:
            disk_gb = psutil.disk_usage(str(self.disk_path)).used / 1e9
        except OSError:
            disk_gb = 0.0
        return Resources(
            cpu_percent=round(psutil.cpu_percent(interval=None), 1),
            mem_used_mb=round((mem.total - mem.available) / 1e6, 1),
            disk_used_gb=round(disk_gb, 2),
        )
