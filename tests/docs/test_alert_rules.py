"""examples/prometheus-alerts.yml: valid for Prometheus, on real metrics, each rule with its runbook.

Guards: a renamed metric turning an alert silently blind, a rule pointing at a runbook
section that was renamed, a rule the runbook does not list (or the reverse).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

import trio

from tests.docs.test_docs import anchors
from tests.obs.test_metrics import METRIC_NAME, exposed_names, promtool, scrape_with_traffic
from tests.required import unavailable

ROOT: Final = Path(__file__).resolve().parents[2]

RULES: Final = ROOT / "examples" / "prometheus-alerts.yml"
RUNBOOK: Final = ROOT / "docs" / "RUNBOOK.md"

#: Metrics that exist only when their feature is configured (a scrape of a plain
#: supervisor lacks them): checked against the source that defines them instead.
CONFIGURED_ONLY: Final = {"hal_o_swarm_discord_up": ROOT / "halswarm" / "obs" / "metrics.py"}


def _rules() -> dict[str, str]:
    """Alert name -> its runbook annotation, in file order."""
    text = RULES.read_text()
    names = re.findall(r"^\s*- alert: (\w+)$", text, flags=re.M)
    runbooks = re.findall(r"^\s*runbook: (\S+)$", text, flags=re.M)
    assert len(names) == len(runbooks), "every rule needs a runbook annotation"
    return dict(zip(names, runbooks, strict=True))


def test_every_rule_points_at_a_runbook_section() -> None:
    rules = _rules()
    assert len(rules) >= 15
    sections = {f"docs/RUNBOOK.md#{anchor}" for anchor in anchors(RUNBOOK)}
    wrong = {name: link for name, link in rules.items() if link not in sections}
    assert not wrong, f"runbook annotations without a matching section in docs/RUNBOOK.md: {wrong}"


def test_the_runbook_lists_exactly_the_rules() -> None:
    text = RUNBOOK.read_text()
    table = text[text.index("## Prometheus alerts") : text.index("## Incidents")]
    listed = set(re.findall(r"`(Halswarm\w+)`", table))
    assert listed == set(_rules())


def test_promtool_accepts_the_rules() -> None:
    binary = promtool()
    if binary is None:
        message = "promtool not found: run `make promtool` (Debian's prometheus package) or set PROMTOOL_BIN"
        unavailable(message)
    done = subprocess.run(
        [binary, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


async def test_every_metric_the_rules_use_is_exposed(tmp_path: Path) -> None:
    used = set(METRIC_NAME.findall(RULES.read_text()))
    assert len(used) >= 12
    with trio.fail_after(30):
        scrape = await scrape_with_traffic(tmp_path)
    missing = used - exposed_names(scrape.text.text) - set(CONFIGURED_ONLY)
    assert not missing, f"rules query metrics /metrics does not expose: {sorted(missing)}"
    for name, source in CONFIGURED_ONLY.items():
        assert f'"{name}"' in source.read_text(), f"{name} is not defined in {source}"
