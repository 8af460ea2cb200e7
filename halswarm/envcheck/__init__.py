"""Environment manifest, checks and safe provisioning for project directories (issue #9).

- :mod:`~halswarm.envcheck.manifest`: the ``env-manifest.json`` model and parser.
- :mod:`~halswarm.envcheck.versions`: versions, constraints, ``--version`` parsing.
- :mod:`~halswarm.envcheck.checks`: check one project directory -> :class:`ProjectReport`.
- :mod:`~halswarm.envcheck.provision`: plan and apply the safe fixes.
- :mod:`~halswarm.envcheck.process`: one subprocess with a deadline and bounded output (checks and approved installs).
- :mod:`~halswarm.envcheck.environment`: the environment a spawned opencode gets (and checks run with).

Used locally by ``halctl env check|provision`` and on agents by
:mod:`halswarm.agent.envchecker` (reports: :mod:`~halswarm.envcheck.report`). See docs/ENVIRONMENT.md.
"""

from __future__ import annotations

from halswarm.envcheck.checks import (
    CheckItem,
    CheckTimeouts,
    DriftItem,
    ProjectReport,
    ProjectState,
    check_project,
    normalise_remote,
)
from halswarm.envcheck.environment import OpencodeEnvironment, manifest_environment
from halswarm.envcheck.manifest import (
    Manifest,
    ManifestError,
    ProjectSpec,
    load_manifest,
    manifest_hash,
    parse_manifest,
)
from halswarm.envcheck.process import ProcessResult
from halswarm.envcheck.provision import (
    Action,
    ManualItem,
    ProvisionPlan,
    ProvisionResult,
    apply_plan,
    opencode_env,
    plan_provision,
    provision_project,
)
from halswarm.envcheck.template import TemplateError, render_template

__all__ = [
    "Action",
    "CheckItem",
    "CheckTimeouts",
    "DriftItem",
    "Manifest",
    "ManifestError",
    "ManualItem",
    "OpencodeEnvironment",
    "ProcessResult",
    "ProjectReport",
    "ProjectSpec",
    "ProjectState",
    "ProvisionPlan",
    "ProvisionResult",
    "TemplateError",
    "apply_plan",
    "check_project",
    "load_manifest",
    "manifest_environment",
    "manifest_hash",
    "normalise_remote",
    "opencode_env",
    "parse_manifest",
    "plan_provision",
    "provision_project",
    "render_template",
]
