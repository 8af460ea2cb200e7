"""Heartbeat monitor: marks nodes offline after ``interval x count`` seconds of silence."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from halswarm.obs.logging import ctx
from halswarm.supervisor.registry import NodeRegistry

__all__ = ["HeartbeatMonitor"]

log = logging.getLogger(__name__)


@attrs.define
class HeartbeatMonitor:
    """Wakes exactly when the next node would time out, so detection is on time, not on a tick."""

    registry: NodeRegistry
    interval: float
    count: int
    on_offline: Callable[[str, str], None]
    # While the pipeline is congested the hub stops reading, so silence proves nothing.
    congested: Callable[[], bool] = lambda: False

    @property
    def timeout(self) -> float:
        """Seconds of silence after which a node is offline."""
        return self.interval * self.count

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check liveness forever.

        Cancellation: safe at any await; a node is either fully expired or untouched.
        """
        task_status.started()
        while True:
            now = trio.current_time()
            wake_at = now + self.timeout
            if self.congested():
                for entry in self.registry.online_entries():
                    self.registry.touch(entry.record.id, now)
                await trio.sleep_until(now + min(self.interval, 1.0))
                continue
            for entry in self.registry.online_entries():
                deadline = entry.last_seen + self.timeout
                if deadline <= now:
                    reason = f"no frame for {self.timeout:g}s ({self.count} missed heartbeats)"
                    if self.registry.expire(entry.record.id, reason):
                        log.warning("node offline: %s", reason, extra=ctx(node_id=entry.record.id))
                        self.on_offline(entry.record.id, reason)
                else:
                    wake_at = min(wake_at, deadline)
            # last_seen only moves forward, so no deadline can come earlier than wake_at.
            await trio.sleep_until(wake_at)
