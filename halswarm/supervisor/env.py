"""The supervisor's side of environment checks (issue #9): the manifest and the latest reports.

- The manifest: loaded from ``env.manifest_path`` at start, replaced by
  ``PUT /api/v1/env/manifest`` (validated, written atomically, audited, event
  ``env.manifest.updated``). Every change fires :attr:`EnvService.changed`; the hub then
  sends it to each connected agent that announced ``env_manifest``.
- Reports: agents emit ``env.check.report`` events; the pipeline hands every committed
  batch to :meth:`EnvService.committed`, which keeps the latest report per (node,
  project) in memory and marks it for the ``env_reports`` table (written by :meth:`run`,
  off the pipeline's task). "Latest" is by arrival: a node's events are committed in
  its seq order, so the last one committed is the newest; the agent's ``checked_at``
  comes from its own clock, which may be skewed, and is never compared.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import attrs
import orjson
import trio

from halswarm.convert import ConversionError, converter, structure_strict
from halswarm.envcheck.manifest import Manifest, load_manifest, manifest_hash, parse_manifest
from halswarm.envcheck.report import REPORT_EVENT, EnvReport
from halswarm.envcheck.views import ManifestInfo
from halswarm.fileutil import write_atomically
from halswarm.obs.logging import ctx
from halswarm.proto.messages import EnvManifest
from halswarm.store import StoreError
from halswarm.store.sql import AuditRecord
from halswarm.sync import Signal
from halswarm.timeutil import Clock, format_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from halswarm.jsontypes import JSONObject, JSONValue
    from halswarm.store import IngestBatch, Store

__all__ = ["MANIFEST_UPDATED", "EnvService"]

log = logging.getLogger(__name__)

MANIFEST_UPDATED: Final = "env.manifest.updated"
_SAVE_RETRY: Final = 5.0
_FINAL_SAVE: Final = 5.0  # seconds for the last write when the supervisor stops


class EnvService:
    """Start with ``await nursery.start(env.run)``."""

    def __init__(
        self,
        store: Store,
        *,
        path: Path | None,
        emit: Callable[[str, JSONObject], None],
        now: Clock,
    ) -> None:
        self.store = store
        self.path = path
        self.emit = emit
        self.now = now
        self.raw: JSONObject | None = None
        self.manifest: Manifest | None = None
        self.hash: str | None = None
        #: Fired whenever the manifest changes.
        self.changed = Signal()
        self.reports: dict[tuple[str, str], EnvReport] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._wake = Signal()
        self._put_lock = trio.Lock()

    # ---- manifest ----------------------------------------------------------------------

    async def load(self) -> None:
        """Read ``env.manifest_path`` (if set and present) and the stored reports.

        Raises:
            ManifestError: the file is invalid (config validation normally catches it first).
        """
        if self.path is not None and await trio.to_thread.run_sync(self.path.is_file):
            manifest = await trio.to_thread.run_sync(load_manifest, self.path)
            raw = orjson.loads(await trio.to_thread.run_sync(self.path.read_bytes))
            self._set(raw, manifest)
        for text in await self.store.load_env_reports():
            try:
                report = structure_strict(orjson.loads(text), EnvReport)
            except (ConversionError, orjson.JSONDecodeError) as exc:
                log.warning("stored environment report ignored: %s", exc)
                continue
            self.reports[report.node_id, report.project] = report

    def _set(self, raw: JSONObject, manifest: Manifest) -> None:
        self.raw, self.manifest, self.hash = raw, manifest, manifest_hash(manifest)
        self.changed.fire()

    def info(self, *, with_values: bool = True) -> ManifestInfo:
        """The manifest as the API shows it; without *with_values*, env var values are
        replaced by ``[REDACTED]`` (they may be secrets: only admins see them)."""
        projects = sorted(self.manifest.projects) if self.manifest is not None else []
        raw = self.raw if with_values or self.raw is None else _without_env_values(self.raw)
        return ManifestInfo(raw, self.hash, str(self.path) if self.path is not None else None, projects)

    def message(self) -> EnvManifest | None:
        """The frame for agents: the parsed, self-contained manifest; None without one."""
        if self.manifest is None or self.hash is None:
            return None
        body: JSONObject = converter.unstructure(self.manifest)
        return EnvManifest(self.hash, body)

    async def put_manifest(self, raw: JSONObject, *, actor: str, source: str, correlation_id: str) -> ManifestInfo:
        """Validate, store (atomically, when a path is configured), audit and announce *raw*.

        Raises:
            ManifestError: invalid, each problem with its key path (nothing changes).
            OSError: the file cannot be written (nothing changes).
        """
        base_dir = self.path.parent if self.path is not None else None
        async with self._put_lock:
            manifest = await trio.to_thread.run_sync(lambda: parse_manifest(raw, base_dir=base_dir))
            if self.path is not None:
                data = orjson.dumps(raw, option=orjson.OPT_INDENT_2)
                await trio.to_thread.run_sync(write_atomically, self.path, data)
            previous = self.hash
            self._set(raw, manifest)
            projects: list[JSONValue] = [*sorted(manifest.projects)]
            detail: JSONObject = {"hash": self.hash, "previous_hash": previous, "projects": projects}
            assert self.hash is not None
            await self.store.insert_audit(
                AuditRecord(
                    format_ts(self.now()),
                    actor,
                    source,
                    "env.manifest.update",
                    str(self.path) if self.path is not None else "env-manifest",
                    "ok",
                    correlation_id,
                    detail,
                )
            )
        self.emit(MANIFEST_UPDATED, dict(detail))
        log.info("environment manifest updated", extra=ctx(hash=self.hash, actor=actor))
        return self.info()

    # ---- reports -----------------------------------------------------------------------

    def committed(self, batches: Sequence[IngestBatch]) -> None:
        """Pipeline hook: take the ``env.check.report`` events of a commit (O(events), no I/O)."""
        for batch in batches:
            for event in batch.events:
                if event.type != REPORT_EVENT:
                    continue
                try:
                    report = structure_strict(event.data, EnvReport)
                except ConversionError as exc:
                    log.warning("malformed environment report ignored: %s", exc, extra=ctx(node_id=batch.node_id))
                    continue
                # The node is who sent it, whatever the report claims.
                report = attrs.evolve(report, node_id=batch.node_id)
                key = (batch.node_id, report.project)
                # Arrival order is the node's seq order (duplicates are already dropped):
                # the later report wins, whatever its checked_at says (agent clocks skew).
                self.reports[key] = report
                self._dirty.add(key)
        if self._dirty:
            self._wake.fire()

    def status(self, node_id: str | None = None, project: str | None = None) -> list[EnvReport]:
        """The latest reports, by node then project."""
        return [
            r
            for (n, p), r in sorted(self.reports.items())
            if (node_id is None or n == node_id) and (project is None or p == project)
        ]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write new reports to the store as they arrive.

        Cancellation: the supervisor cancels this last, after the pipeline drained; the
        reports not written yet are written then (bounded by ``_FINAL_SAVE``), so the
        reports seen before a graceful stop are there after the restart.
        Error handling: a failed write is logged and retried.
        """
        task_status.started()
        try:
            while True:
                wake = self._wake.waiter()
                if not await self._save_marked():
                    await trio.sleep(_SAVE_RETRY)
                    continue
                await wake.wait()
        finally:
            with trio.move_on_after(_FINAL_SAVE, shield=True):
                await self._save_marked()

    async def _save_marked(self) -> bool:
        """Write the reports marked since the last write; False when the store failed.

        A report stays marked until it is written (a failed or cancelled write loses
        nothing), and one replaced while it was being written stays marked.
        """
        saving = {key: report for key in sorted(self._dirty) if (report := self.reports.get(key)) is not None}
        if not saving:
            self._dirty.clear()
            return True
        rows = [
            (n, p, r.state, r.checked_at, orjson.dumps(converter.unstructure(r)).decode())
            for (n, p), r in saving.items()
        ]
        try:
            await self.store.save_env_reports(rows)
        except StoreError as exc:
            log.error("could not store environment reports (retrying): %s", exc)
            return False
        for key, report in saving.items():
            if self.reports.get(key) is report:
                self._dirty.discard(key)
        return True


def _without_env_values(raw: JSONObject) -> JSONObject:
    """A copy of a manifest with every ``env.<NAME>.value`` replaced by ``[REDACTED]``."""

    def scrub(section: JSONValue) -> JSONValue:
        if not isinstance(section, dict):
            return section
        env = section.get("env")
        if not isinstance(env, dict):
            return section
        hidden: JSONObject = {
            name: {**var, "value": "[REDACTED]"} if isinstance(var, dict) and "value" in var else var
            for name, var in env.items()
        }
        return {**section, "env": hidden}

    out: JSONObject = dict(raw)
    out["defaults"] = scrub(raw.get("defaults"))
    if "defaults" not in raw:
        del out["defaults"]
    projects = raw.get("projects")
    if isinstance(projects, dict):
        out["projects"] = {name: scrub(spec) for name, spec in projects.items()}
    return out
