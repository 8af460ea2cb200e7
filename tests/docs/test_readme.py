"""The README's commands, run (issue 10): every command it shows is run here, or mapped to
the test that exercises it.

Commands are the lines of README.md's ``sh``/``bash``/``console`` blocks (see
:mod:`tests.docs.markdown`) plus the inline ``.venv/bin/...`` and ``curl ...`` commands the
text tells the reader to try. Each one is either

- **run** by a step below (``@runs("<the command as the README shows it>")``), in one
  walk on a real cluster built by the README's own "Running it yourself" lines: ``make``
  targets as dry runs (``make -n``: the target exists and says what it would do), ``cp``,
  ``export``, ``--validate`` and ``curl`` through bash, the daemons as real processes, the
  ``halctl`` synopses in-process with their placeholders filled from the cluster; a
  halctl step must use every literal word of its synopsis (each option, each ``a|b``
  alternative, each example value) across its runs; or
- **mapped** in :data:`MAPPED` (command prefix -> test node id) to the test that runs it,
  for what cannot run here in seconds (the real opencode) or needs root/systemd.

A README command that is neither fails :func:`test_every_readme_command_is_run_or_mapped`
naming it, so a README edit cannot leave a command nobody checks; a step or mapping for a
command no longer in the README fails it too.
"""

from __future__ import annotations

import ast
import re
import sqlite3
from typing import TYPE_CHECKING, Final

import orjson
import pytest
import trio

from halswarm.convert import converter, structure_strict
from halswarm.demo import prepare
from halswarm.envcheck.views import EnvStatus
from halswarm.models import Command as CommandRecord
from halswarm.testing import wait_supervisor_ready, wait_until
from tests.docs.commandlines import check_line
from tests.docs.markdown import Command, inline_code, read_commands
from tests.docs.tour import QUIET, ROOT, Tour, git_init, open_tour

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

README: Final = ROOT / "README.md"
NODE: Final = "readme-node"  # the node_id the README's agent.json is given

#: The whole walk's hang guard; it takes 6 s on a quiet machine, up to 20 s on a busy one.
WALK_TIMEOUT: Final = 60.0

#: README commands exercised by another test instead of being run here: a prefix of the
#: command as the README shows it (blanks collapsed, comment dropped) -> the test's node id.
#: One line per command; a step in STEPS wins over a mapping.
MAPPED: Final[dict[str, str]] = {
    # Drives the real opencode: needs the pinned binary and the stub LLM, and minutes.
    ".venv/bin/hal-agent --config agent.json": (
        "tests/opencode_agent/test_agent_crash_e2e.py"
        "::test_restarted_agent_replaces_the_orphaned_opencode_and_keeps_its_sessions"
    ),
    # Root, /etc, /opt, systemd: the deploy tests run them in overlays and staging trees.
    "sudo ./deploy/install.sh --all": "tests/deploy/test_real_install.py::test_real_install_upgrade_and_uninstall",
    "sudo ./deploy/install.sh --supervisor": "tests/deploy/test_install.py::test_one_role_installs_only_that_role",
    "sudoedit /etc/hal-o-swarm/supervisor.config.json": (
        "tests/deploy/test_install.py::test_generated_configs_are_valid_with_a_fresh_shared_token"
    ),
    "sudo systemctl start hal-supervisor hal-agent": (
        "tests/deploy/test_real_install.py::test_real_install_upgrade_and_uninstall"
    ),
    # JSON lines on stderr are what journald keeps; READY/STOPPING as systemd sees them.
    "journalctl -u hal-supervisor -f": "tests/e2e/test_systemd.py::test_supervisor_ready_watchdog_reload_and_stop",
}

#: Inline code the README tells the reader to run (not just a name): these join the commands.
_RUNNABLE_INLINE: Final = re.compile(r"^(\.venv/bin/\S+|curl)\s")

STEPS: dict[str, Callable[[Tour], Awaitable[None]]] = {}


def runs(command: str) -> Callable[[Callable[[Tour], Awaitable[None]]], Callable[[Tour], Awaitable[None]]]:
    """Register a step that runs README *command* (as the README shows it). Steps run in
    the order they are registered and share the tour's cluster and values."""

    def register(step: Callable[[Tour], Awaitable[None]]) -> Callable[[Tour], Awaitable[None]]:
        assert command not in STEPS, f"two steps for {command!r}"
        STEPS[command] = step
        return step

    return register


def readme_commands() -> list[Command]:
    """Every command the README shows: its shell and console blocks, and the inline ones to try."""
    commands = read_commands(README)
    text = README.read_text(encoding="utf-8")
    commands += [Command(README, line, span) for line, span in inline_code(text) if _RUNNABLE_INLINE.match(span)]
    return commands


def mapping_for(key: str) -> str | None:
    """The test a README command is mapped to (longest matching prefix, on a word boundary)."""
    matches = [prefix for prefix in MAPPED if key == prefix or key.startswith(prefix + " ")]
    return MAPPED[max(matches, key=len)] if matches else None


def _test_exists(node_id: str) -> bool:
    """Whether *node_id* (``path::test`` or ``path::Class::test``, parameters ignored) names a test."""
    path, *names = node_id.split("::")
    file = ROOT / path
    if not file.is_file() or not names:
        return False
    scope: list[ast.stmt] = ast.parse(file.read_text()).body
    for name in (n.split("[", 1)[0] for n in names):
        found = next(
            (
                node
                for node in scope
                if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
            ),
            None,
        )
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return True


# ---- the static checks ------------------------------------------------------------------------


def test_every_readme_command_is_run_or_mapped() -> None:
    commands = readme_commands()
    keys = {c.key for c in commands}
    assert len(commands) > 40  # the parser found the blocks
    problems = [
        f"{c.where}: `{c.key}` is neither run by a step in tests/docs/test_readme.py nor mapped in MAPPED"
        for c in commands
        if c.key not in STEPS and mapping_for(c.key) is None
    ]
    problems += [f"step for `{key}`, which the README no longer shows" for key in STEPS if key not in keys]
    unmapped = {c.key for c in commands if c.key not in STEPS}
    problems += [
        f"MAPPED[{prefix!r}] matches no README command (that is not run by a step)"
        for prefix in MAPPED
        if not any(key == prefix or key.startswith(prefix + " ") for key in unmapped)
    ]
    problems += [
        f"MAPPED[{prefix!r}] -> {node}: no such test" for prefix, node in MAPPED.items() if not _test_exists(node)
    ]
    assert not problems, "\n".join(problems)


def test_readme_commands_use_real_subcommands_and_options() -> None:
    problems = [f"{c.where}: {p}" for c in readme_commands() for p in check_line(c.text)]
    assert not problems, "\n".join(problems)


def test_mapped_test_lookup_finds_real_tests_only() -> None:
    assert _test_exists("tests/docs/test_readme.py::test_every_readme_command_is_run_or_mapped")
    assert not _test_exists("tests/docs/test_readme.py::test_that_does_not_exist")
    assert not _test_exists("tests/docs/nope.py::test_every_readme_command_is_run_or_mapped")
    assert mapping_for(".venv/bin/hal-agent --config agent.json --simulate 10") is not None  # prefix
    assert mapping_for(".venv/bin/hal-agent --config agent.jsonx") is None  # not on a word boundary


# ---- the walk ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_readme_commands_run(tmp_path: Path) -> None:
    by_key = {c.key: c for c in readme_commands()}
    with trio.fail_after(WALK_TIMEOUT):
        async with open_tour(tmp_path) as tour:
            for key, step in STEPS.items():
                command = by_key.get(key)
                if command is None:
                    continue  # reported by test_every_readme_command_is_run_or_mapped
                tour.current = command
                await step(tour)
            tour.current = None
            await tour.stop_quiet()
            codes = await tour.stop_daemons()
            # README: "SIGTERM or SIGINT stops either daemon gracefully ... exit 0".
            assert codes == [0] * len(tour.daemons), [d.log_text()[-2000:] for d in tour.daemons]
            for daemon in tour.daemons:
                assert "Traceback" not in daemon.log_text(), daemon.log_text()
    unused = {key: tour.unused_words(key) for key in STEPS if key.startswith("halctl ") and key in by_key}
    unused = {key: words for key, words in unused.items() if words}
    assert not unused, "halctl steps that never used these words of their README synopsis: " + repr(unused)


# ---- the steps, in the order they run ---------------------------------------------------------


@runs("make demo")
async def _make_demo(tour: Tour) -> None:
    assert "-m halswarm.demo --dir .halswarm" in await _dry_run(tour, "demo")


@runs("make test")
async def _make_test(tour: Tour) -> None:
    plan = await _dry_run(tour, "test")
    for tool in ("ruff check", "flake8-async", "mypy", "pytest"):
        assert tool in plan, plan


@runs("make venv")
async def _make_venv(tour: Tour) -> None:
    await _dry_run(tour, "venv")


async def _dry_run(tour: Tour, target: str) -> str:
    """``make -n TARGET`` at the repository root (the target exists; nothing runs): what it would do."""
    assert tour.command.key == f"make {target}"
    with trio.fail_after(30):
        done = await trio.run_process(
            ["make", "-n", "-C", str(ROOT), target], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@runs("cp examples/supervisor.config.json supervisor.json")
async def _copy_supervisor_config(tour: Tour) -> None:
    await tour.shell()
    # What the README's comment asks: database.path somewhere writable. Loopback and free
    # ports too, instead of 0.0.0.0:8420/8421: other tests run alongside.
    path = tour.cwd / "supervisor.json"
    config = orjson.loads(path.read_bytes())
    config["database"]["path"] = str(tour.cwd / "data" / "supervisor.db")
    config["server"].update(host="127.0.0.1", port=tour.ws_port, http_port=tour.http_port)
    path.write_bytes(orjson.dumps(config))


@runs("cp examples/agent.opencode.config.json agent.json")
async def _copy_agent_config(tour: Tour) -> None:
    await tour.shell()
    # The README's comment: set supervisor_url, node_id, projects (git work trees, so the
    # environment checks below see repositories).
    path = tour.cwd / "agent.json"
    config = orjson.loads(path.read_bytes())
    projects = []
    for project in config["projects"]:
        directory = tour.cwd / "projects" / project["name"]
        await git_init(directory)
        projects.append({"name": project["name"], "directory": str(directory)})
    config.update(supervisor_url=f"ws://127.0.0.1:{tour.ws_port}", node_id=NODE, projects=projects)
    path.write_bytes(orjson.dumps(config))


@runs(".venv/bin/hal-supervisor --config supervisor.json --validate")
async def _validate(tour: Tour) -> None:
    assert "supervisor.json: configuration is valid" in (await tour.shell()).stdout


@runs("export HALSWARM_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
async def _export_token(tour: Tour) -> None:
    token = (await tour.shell(suffix='; printf %s "$HALSWARM_AUTH_TOKEN"')).stdout
    assert len(token) >= 16  # what server.auth_token requires
    tour.env["HALSWARM_AUTH_TOKEN"] = token


@runs(".venv/bin/hal-supervisor --config supervisor.json &")
async def _start_supervisor(tour: Tour) -> None:
    await tour.start_daemon()  # `&`: the shell goes on at once, and so does the walk


@runs(".venv/bin/hal-agent --config agent.json --simulate 10")
async def _start_simulated_agent(tour: Tour) -> None:
    await tour.start_daemon()  # the README runs it in the foreground of its shell
    await wait_supervisor_ready(tour.http_port)
    # The exported token is the one in effect, not the file's placeholder.
    assert "nodes" in await tour.api("/api/v1/nodes")

    async def ten_sessions() -> bool:
        return len(await tour.sessions(node=NODE)) == 10

    await wait_until(ten_sessions, within=20, what=f"{NODE}'s 10 simulated sessions")
    await tour.quiet()  # joins now, for the commands that need known requests
    tour.values["session-id"] = str((await tour.sessions(node=NODE))[0]["id"])


@runs(".venv/bin/hal-supervisor db backup backup.db --config supervisor.json")
async def _db_backup(tour: Tour) -> None:
    # "online": the supervisor runs and the simulated agent streams meanwhile.
    taken = await tour.shell()
    backup = tour.cwd / "backup.db"
    assert backup.is_file(), taken.stdout
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM events WHERE node_id = ?", (NODE,)).fetchone()[0] > 0
    # "never over a file without --force"
    refused = await tour.shell(expect=1)
    assert "--force" in refused.stderr, refused.stderr


@runs(".venv/bin/hal-supervisor db migrate --config supervisor.json")
async def _db_migrate(tour: Tour) -> None:
    await tour.shell()  # the start migrated already: nothing pending, exit 0


@runs(".venv/bin/hal-supervisor db stats --config supervisor.json [--output json]")
async def _db_stats(tour: Tour) -> None:
    plain = await tour.shell(variant=".venv/bin/hal-supervisor db stats --config supervisor.json")
    assert NODE in plain.stdout, plain.stdout
    stats = orjson.loads((await tour.shell(variant=tour.command.key.replace("[", "").replace("]", ""))).stdout)
    assert isinstance(stats, dict)
    assert NODE in orjson.dumps(stats).decode()


# The inline commands the README's first paragraph suggests "with the demo running": from
# the demo's directory, whose .halswarm/halctl.json (written as `make demo` writes it)
# gives halctl the URL and token.


async def _from_demo_directory(tour: Tour, *args: str) -> str:
    demo = tour.cwd / "demo"
    settings = demo / ".halswarm" / "halctl.json"
    if not settings.exists():
        prepare(demo / ".halswarm", sessions=6)
        written = orjson.loads(settings.read_bytes())
        assert set(written) == {"url", "token"}
        settings.write_bytes(orjson.dumps({"url": tour.url, "token": tour.token}))
    bare = {k: v for k, v in tour.env.items() if k != "HALSWARM_AUTH_TOKEN"}  # no token in the environment, no flags
    return (await tour.halctl(*args, env=bare, cwd=demo)).stdout


@runs(".venv/bin/halctl nodes list")
async def _try_nodes(tour: Tour) -> None:
    listed = await _from_demo_directory(tour, "nodes", "list")
    assert NODE in listed
    assert QUIET.node in listed


@runs(".venv/bin/halctl sessions list")
async def _try_sessions(tour: Tour) -> None:
    assert QUIET.idle[:12] in await _from_demo_directory(tour, "sessions", "list")


@runs("curl localhost:8421/readyz")
async def _try_readyz(tour: Tour) -> None:
    ready = orjson.loads((await tour.shell()).stdout)
    assert ready["status"] == "healthy", ready


# ---- the halctl block -------------------------------------------------------------------------


@runs("halctl nodes list")
async def _nodes_list(tour: Tour) -> None:
    listed = (await tour.halctl("nodes", "list")).stdout
    assert NODE in listed
    assert QUIET.node in listed


@runs("halctl nodes get <node-id>")
async def _nodes_get(tour: Tour) -> None:
    shown = (await tour.halctl("nodes", "get", NODE)).stdout
    assert NODE in shown
    assert "online" in shown


@runs("halctl sessions list [--status waiting] [--project P] [--node N]")
async def _sessions_list(tour: Tour) -> None:
    q = await tour.quiet()
    assert q.idle[:12] in (await tour.halctl("sessions", "list")).stdout
    waiting = await tour.halctl("sessions", "list", "--status", "waiting", "--project", q.project, "--node", q.node)
    for session in (q.asks, q.refused, q.asking):
        assert session[:12] in waiting.stdout
    assert q.idle[:12] not in waiting.stdout


@runs("halctl sessions get <session-id>")
async def _sessions_get(tour: Tour) -> None:
    q = await tour.quiet()
    shown = (await tour.halctl("sessions", "get", q.asks)).stdout
    assert q.asks in shown
    assert q.approve_once in shown


@runs("halctl sessions logs <session-id> [--limit 100] [--type 'session.*'] [--follow]")
async def _sessions_logs(tour: Tour) -> None:
    q = await tour.quiet()
    assert (await tour.halctl("sessions", "logs", q.idle)).stdout.strip()
    # --follow runs until Ctrl-C (tests/cli covers that); the hidden --max-polls ends it here.
    args = ["--limit", "100", "--type", "session.*", "--follow", "--interval", "0.01", "--max-polls", "2"]
    followed = await tour.halctl("sessions", "logs", q.idle, *args)
    assert "session.updated" in followed.stdout


@runs('halctl sessions start <project> [--prompt "..."]')
async def _sessions_start(tour: Tour) -> None:
    q = await tour.quiet()
    for extra in ([], ["--prompt", "Write the changelog"]):
        started = await tour.halctl("sessions", "start", q.project, *extra)
        assert started.stdout.startswith(f"start_session on {q.project}: succeeded — new session ses_")


@runs('halctl sessions inject <session-id|project> "prompt"')
async def _sessions_inject(tour: Tour) -> None:
    q = await tour.quiet()
    for target in (q.idle, q.project):
        injected = await tour.halctl("sessions", "inject", target, "Add tests for the refund path")
        assert ": succeeded" in injected.stdout


@runs("halctl sessions resume|restart|abort|kill <session-id|project>")
async def _sessions_control(tour: Tour) -> None:
    q = await tour.quiet()
    resumed = await tour.halctl("-o", "json", "sessions", "resume", q.idle)
    command = resumed.json()["command"]
    assert isinstance(command, dict)
    tour.values["command-id"] = str(command["id"])
    await tour.halctl("sessions", "resume", q.project)
    await tour.halctl("sessions", "abort", q.idle)
    restarted = (await tour.halctl("sessions", "restart", q.idle)).stdout
    successor = re.search(r"new session (ses_[0-9a-f]{24})", restarted)
    assert successor is not None, restarted
    await tour.halctl("sessions", "kill", successor.group(1))


@runs("halctl sessions permissions [--project P] [--node N] [--session S]")
async def _sessions_permissions(tour: Tour) -> None:
    q = await tour.quiet()
    everything = (await tour.halctl("sessions", "permissions")).stdout
    for request in (q.approve_once, q.reject_bare, q.question):
        assert request[:12] in everything
    one = await tour.halctl("sessions", "permissions", "--project", q.project, "--node", q.node, "--session", q.asks)
    assert q.approve_once[:12] in one.stdout
    assert q.question[:12] not in one.stdout


@runs('halctl sessions approve <request-id> [--always] [--message "..."]')
async def _sessions_approve(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("sessions", "approve", q.approve_once)
    await tour.halctl("sessions", "approve", q.approve_always, "--always", "--message", "Go ahead")


@runs('halctl sessions reject <request-id> [--message "..."]')
async def _sessions_reject(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("sessions", "reject", q.reject_with_message, "--message", "Not on main, please")
    await tour.halctl("sessions", "reject", q.reject_bare)


@runs("halctl sessions answer <request-id> --answer LABEL[,LABEL...] [--answer ...]")
async def _sessions_answer(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("sessions", "answer", q.question, "--answer", "thorough", "--answer", "src/a.py,src/b.py")

    async def answered() -> bool:
        return not await tour.sessions(node=q.node, status="waiting")

    await wait_until(answered, what="no session of the quiet node waiting any more")


@runs("halctl commands get <command-id> [--wait 30]")
async def _commands_get(tour: Tour) -> None:
    command_id = tour.values["command-id"]
    for extra in ([], ["--wait", "30"]):
        assert "succeeded" in (await tour.halctl("commands", "get", command_id, *extra)).stdout


@runs("halctl cost [today|week|month] [--by project|model|provider|day]")
async def _cost(tour: Tour) -> None:
    await tour.halctl("cost")
    for period, by in (("today", "project"), ("week", "model"), ("month", "provider"), ("today", "day")):
        shown = (await tour.halctl("cost", period, "--by", by)).stdout
        assert shown.startswith(f"cost {period} "), shown


@runs("halctl cost --from 2026-11-01 [--to 2026-11-24] [--by ...]")
async def _cost_range(tour: Tour) -> None:
    # Always with --to: --from alone ends today, which a year on is beyond 366 days.
    for extra in ([], ["--by", "day"]):
        shown = (await tour.halctl("cost", "--from", "2026-11-01", "--to", "2026-11-24", *extra)).stdout
        assert shown.startswith("cost 2026-11-01..2026-11-24 (24 days)"), shown


@runs("halctl policies list")
async def _policies_list(tour: Tour) -> None:
    assert "resume_on_idle" in (await tour.halctl("policies", "list")).stdout


@runs("halctl policies enable|disable <policy>")
async def _policies_switch(tour: Tour) -> None:
    # node_offline is on by default: off and on again leaves the cluster as it was.
    await tour.halctl("policies", "disable", "node_offline")
    await tour.halctl("policies", "enable", "node_offline")


@runs("halctl projects list")
async def _projects_list(tour: Tour) -> None:
    listed = (await tour.halctl("projects", "list")).stdout
    assert QUIET.project in listed
    assert "web-app" in listed


@runs('halctl projects complete <project> [--detail "..."]')
async def _projects_complete(tour: Tour) -> None:
    await tour.halctl("projects", "complete", "web-app")
    await tour.halctl("projects", "complete", "api", "--detail", "v2 shipped")


@runs("halctl audit [--actor 'policy:*'] [--action 'command.*'] [--target T] [--since 2h] [--limit 50] [--before ID]")
async def _audit(tour: Tour) -> None:
    assert "project.completed" in (await tour.halctl("audit")).stdout  # the newest rows
    await tour.halctl("audit", "--actor", "policy:*", "--action", "command.*", "--since", "2h", "--limit", "50")
    mine = await tour.halctl(
        "audit", "--actor", "api", "--action", "command.*", "--target", QUIET.idle, "--before", "1000000"
    )
    assert "command.abort_session" in mine.stdout


# Environments: the manifest first (the README lists it after status|drift), so there is
# something to report. Every project directory is a fresh git work tree: degraded (no
# .context/, no AGENT.md) until provisioned.

MANIFEST: Final = {
    "version": 1,
    "defaults": {"tools": ["git"], "agent": {"template": "# {{ project }}\nWork only inside {{ project }}.\n"}},
    "projects": {
        QUIET.project: {
            "install": {"git-version": {"command": ["git", "--version"], "timeout_sec": 30, "fixes": "tool:git"}}
        }
    },
}
EXIT_DEGRADED: Final = 6


@runs("halctl env manifest show | set <file>")
async def _env_manifest(tour: Tour) -> None:
    (tour.cwd / "env-manifest.json").write_bytes(orjson.dumps(MANIFEST))
    await tour.halctl("env", "manifest", "set", "env-manifest.json")
    assert "docs-site" in (await tour.halctl("env", "manifest", "show")).stdout
    q = await tour.quiet()

    async def reported() -> bool:
        status = structure_strict(await tour.api("/api/v1/env/status"), EnvStatus)
        current = {(r.node_id, r.project) for r in status.reports if r.manifest_hash == status.manifest_hash}
        return current == {(q.node, q.project), (NODE, "web-app"), (NODE, "api")}

    await wait_until(reported, what="every project's report against the manifest")


@runs("halctl env status|drift [--node N] [--project P]")
async def _env_status(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("env", "status", expect=EXIT_DEGRADED)
    await tour.halctl("env", "status", "--node", q.node, "--project", q.project, expect=EXIT_DEGRADED)
    await tour.halctl("env", "drift")
    drift = await tour.halctl("env", "drift", "--node", q.node, "--project", q.project)
    assert "AGENT.md" in drift.stdout


@runs("halctl env check --node N [--project P]")
async def _env_check(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("env", "check", "--node", q.node, expect=EXIT_DEGRADED)
    await tour.halctl("env", "check", "--node", q.node, "--project", q.project, expect=EXIT_DEGRADED)


@runs("halctl env provision --node N [--project P] [--dry-run]")
async def _env_provision(tour: Tour) -> None:
    q = await tour.quiet()
    planned = await tour.halctl("env", "provision", "--node", q.node, "--dry-run")
    assert "dry run" in planned.stdout
    done = await tour.halctl("env", "provision", "--node", q.node, "--project", q.project)
    assert "now ready" in done.stdout
    await tour.halctl("env", "status", "--node", q.node)  # exit 0: ready
    # The README's comment: without --node it runs here, with no supervisor.
    local = tour.cwd / "projects" / q.project
    await tour.halctl("env", "check", "--dir", str(local), "--project", q.project, "--manifest", "env-manifest.json")


@runs("halctl env approve --node N --project P <install>")
async def _env_approve(tour: Tour) -> None:
    q = await tour.quiet()
    approved = await tour.halctl("env", "approve", "--node", q.node, "--project", q.project, "git-version")
    assert "git version" in approved.stdout


@runs("halctl agent-md show|diff <project>")
async def _agent_md(tour: Tour) -> None:
    q = await tour.quiet()
    assert "Work only inside docs-site." in (await tour.halctl("agent-md", "show", q.project)).stdout
    assert "matches the template" in (await tour.halctl("agent-md", "diff", q.project)).stdout


@runs("halctl agent-md sync [--node N] [--project P]")
async def _agent_md_sync(tour: Tour) -> None:
    q = await tour.quiet()
    await tour.halctl("agent-md", "sync", "--node", q.node, "--project", q.project)
    await tour.halctl("agent-md", "sync")
    assert (tour.cwd / "projects" / "web-app" / "AGENT.md").read_text() == "# web-app\nWork only inside web-app.\n"


@runs("halctl health")
async def _health(tour: Tour) -> None:
    await tour.halctl("health")


@runs("halctl --output json sessions list")
async def _json_output(tour: Tour) -> None:
    sessions = (await tour.halctl("--output", "json", "sessions", "list")).json()["sessions"]
    assert isinstance(sessions, list)
    assert len(sessions) >= 10


@runs("halctl cost week")
async def _cost_week_console(tour: Tour) -> None:
    shown = (await tour.halctl("cost", "week")).stdout.splitlines()
    # The README's sample output starts like the real one (digits aside).
    assert _shape(shown[0]) == _shape(tour.command.output[0]), (shown[0], tour.command.output[0])


def _shape(line: str) -> str:
    return re.sub(r"\d+", "0", line.strip())


@runs(
    'curl -X POST -H "Authorization: Bearer $HALSWARM_AUTH_TOKEN" -H "Content-Type: application/json" '
    '-d \'{"type":"restart_session","target":"<session-id>"}\' http://localhost:8421/api/v1/commands'
)
async def _curl_command(tour: Tour) -> None:
    command = converter.structure(orjson.loads((await tour.shell()).stdout)["command"], CommandRecord)
    assert command.status == "succeeded", command
    assert command.result is not None
    assert command.result["predecessor_id"] == tour.values["session-id"]
