"""A systemd notifier that records its messages with trio's time instead of sending them."""

from __future__ import annotations

import trio

from halswarm.sdnotify import Notifier

__all__ = ["Recorder"]


class Recorder(Notifier):
    """A notifier that records (virtual time, message) instead of using a socket."""

    def __init__(self, *, watchdog: float | None) -> None:
        super().__init__("/run/test/notify", watchdog=watchdog)
        self.messages: list[tuple[float, str]] = []

    def _deliver(self, data: bytes) -> None:
        self.messages.append((trio.current_time(), data.decode()))

    def pings(self) -> list[float]:
        return [at for at, text in self.messages if text == "WATCHDOG=1"]

    def statuses(self) -> list[str]:
        return [text.removeprefix("STATUS=") for _, text in self.messages if text.startswith("STATUS=")]

    def lifecycle(self) -> list[str]:
        """The first key of each message but status updates and pings: ``READY``, ``RELOADING``, ``STOPPING``."""
        kinds = [text.split("=", 1)[0] for _, text in self.messages]
        return [kind for kind in kinds if kind not in ("STATUS", "WATCHDOG")]
