"""How halctl prints environment reports, drift, provisioning and installs (issue #9).

Used by the local ``halctl env check|provision`` and by the commands that ask the
supervisor (:mod:`halswarm.cli.env_remote`); pure functions from values to rich
renderables.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Final, Protocol

from rich.text import Text

from halswarm.cli.audit import fitted_table
from halswarm.cli.render import ago

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from rich.table import Table

    from halswarm.envcheck.checks import CheckItem, DriftItem
    from halswarm.envcheck.report import EnvReport
    from halswarm.envcheck.views import DriftEntry, InstallOutcome, ProvisionOutcome

__all__ = [
    "STATE_STYLES",
    "diff_text",
    "drift_table",
    "install_lines",
    "outcome_lines",
    "report_lines",
    "state_text",
    "status_table",
]

STATE_STYLES: Final = {"ready": "green", "degraded": "yellow", "missing": "bold red"}
_STATUS_STYLES: Final = {"ok": "green", "fail": "bold red", "skip": "dim"}
_DIFF_STYLES: Final = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


class _Report(Protocol):
    """What a local :class:`ProjectReport` and a stored :class:`EnvReport` share."""

    @property
    def project(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def directory(self) -> str: ...
    @property
    def checks(self) -> Sequence[CheckItem]: ...
    @property
    def drift(self) -> Sequence[DriftItem]: ...


def state_text(state: str | None) -> Text:
    """The state word, coloured (``-`` when unknown)."""
    return Text(state or "-", style=STATE_STYLES.get(state or "", ""))


def report_lines(report: _Report, width: int, *, node: str | None = None) -> list[Text | object]:
    """The renderables for one report: a heading, the checks table, the drift lines."""
    heading = Text(f"{node}/{report.project}  " if node else f"{report.project}  ", style="bold")
    heading.append(report.state, style=STATE_STYLES[report.state])
    heading.append(f"  {report.directory}")
    rows: list[list[str | Text]] = [
        [c.category, c.name, Text(c.status, style=_STATUS_STYLES[c.status]), c.expected, c.actual, c.fix or ""]
        for c in report.checks
    ]
    table = fitted_table(["CATEGORY", "CHECK", "STATUS", "EXPECTED", "ACTUAL", "FIX"], rows, width=width, flex="ACTUAL")
    out: list[Text | object] = [heading, table]
    out += [Text(f"drift: {d.check} {d.kind} (expected {d.expected}, found {d.actual})") for d in report.drift]
    if node is not None and any(c.category == "env" and c.status == "fail" and c.fix == "safe" for c in report.checks):
        out.append(
            Text(
                f"fix: halctl env provision --node {node} restarts opencode serve with the new values "
                "(only while no session is busy)",
                style="yellow",
            )
        )
    return out


def status_table(reports: list[EnvReport], now: datetime, width: int = 120) -> Table:
    """One row per (node, project): state, failed checks, drift items, when checked."""
    rows: list[list[str | Text]] = [
        [
            r.node_id,
            r.project,
            state_text(r.state),
            str(len(r.failed())),
            str(len(r.drift)),
            ago(r.checked_at, now),
        ]
        for r in reports
    ]
    table = fitted_table(["NODE", "PROJECT", "STATE", "FAILED", "DRIFT", "CHECKED"], rows, width=width, flex="PROJECT")
    counts = {s: sum(1 for r in reports if r.state == s) for s in ("ready", "degraded", "missing")}
    table.caption = f"{len(reports)} project(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())
    table.caption_justify = "left"
    return table


def drift_table(entries: list[DriftEntry], width: int = 120) -> Table:
    """One row per drift item."""
    rows: list[list[str | Text]] = [[e.node_id, e.project, e.check, e.kind, e.expected, e.actual] for e in entries]
    return fitted_table(["NODE", "PROJECT", "CHECK", "KIND", "EXPECTED", "FOUND"], rows, width=width, flex="FOUND")


def outcome_lines(outcome: ProvisionOutcome, *, node: str | None = None) -> list[Text]:
    """One project's provisioning: the plan (dry run) or what was applied, and what needs approval.

    Args:
        outcome: a node's answer, or halctl's own for a local run
            (:meth:`~halswarm.envcheck.views.ProvisionOutcome.from_result`).
        node: the node that answered; None for a local run (no approval through the
            supervisor: the install command is shown instead).
    """
    title = Text(f"{node}/{outcome.project}  " if node else f"{outcome.project}  ", style="bold")
    kinds = {a.path: a.kind.replace("_", " ") for a in outcome.actions}
    if outcome.dry_run:
        title.append(f"{len(outcome.actions)} safe action(s) planned (dry run: nothing changed)")
        done = [f"would {kinds[a.path]}: {a.path}" for a in outcome.actions]
    else:
        title.append(f"{len(outcome.applied)} safe action(s) applied; now ")
        title.append_text(state_text(outcome.state_after))
        # A restart of opencode is applied too, with no action (no file) of its own.
        done = [f"did {kinds[path]}: {path}" if path in kinds else f"did: {path}" for path in outcome.applied]
    out = [title, *(Text(f"  {line}") for line in done)]
    out += [Text(f"  failed: {e}", style="bold red") for e in outcome.errors]
    restart = outcome.opencode_restart
    # Restarted: in applied; failed: in errors.
    if restart is not None and restart.status == "planned":
        out.append(Text(f"  would restart opencode serve to apply {', '.join(restart.checks)}: {restart.detail}"))
    elif restart is not None and restart.status == "pending":
        out.append(Text(f"  pending: {', '.join(restart.checks)}: {restart.detail}", style="yellow"))
    if outcome.env:
        out.append(Text(f"  opencode environment gets: {', '.join(outcome.env)} (never written to disk)"))
    for item in outcome.manual:
        line = Text(f"  {item.fix}: {item.check} (expected {item.expected}, found {item.actual})", style="yellow")
        if item.install is not None and item.command is not None:
            line.append(
                f"; needs approval to run {item.install}: {' '.join(item.command)}"
                if node is None
                else f"; needs approval: halctl env approve --node {node} --project {outcome.project} {item.install}"
            )
        out.append(line)
    return out


def install_lines(node: str, outcome: InstallOutcome) -> list[Text]:
    """An approved install's run: the exit code, then its captured output."""
    head = Text(f"install {outcome.install} on {node}/{outcome.project}: ", style="bold")
    if outcome.timed_out:
        head.append("timed out", style="bold red")
    else:
        head.append(f"exit {outcome.exit_code}", style="green" if outcome.ok else "bold red")
    if outcome.state_after is not None:
        head.append("; now ")
        head.append_text(state_text(outcome.state_after))
    out = [head, Text(f"$ {shlex.join(outcome.command)}", style="dim")]
    if outcome.error:
        out.append(Text(f"error: {outcome.error}", style="bold red"))
    for name, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        if text:
            out.append(Text(f"--- {name}" + (" (cut short)" if outcome.truncated else ""), style="dim"))
            out.append(Text(text.rstrip("\n")))
    return out


def diff_text(diff: str) -> Text:
    """A unified diff, each line coloured by its kind (colours vanish off a terminal)."""
    text = Text()
    for line in diff.splitlines(keepends=True):
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
        text.append(line, style=style)
    text.rstrip()
    return text
