"""The docs checks' own parsing: what counts as a command, and what a wrong one looks like."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.commandlines import check_line, split_commands
from tests.docs.markdown import fenced_blocks, inline_code, shell_commands, strip_comment, synopsis_words

DOC = """# Title

```sh
make venv                       # or: pip install -e .
curl -X POST -H "X: a # not a comment" \\
  -d '{"a": 1}' \\
  http://localhost:8421/api/v1/commands

halctl nodes list
```

```console
$ halctl cost week
cost week 2026-11-18..2026-11-24 (7 days): total $52.75
provider bill $8.00
$ halctl health
ok
```

```json
{"not": "a command"}
```

Try `.venv/bin/halctl nodes list` or `halctl env status\\|drift`.
"""


def _commands() -> list[tuple[int, str, list[str]]]:
    blocks = fenced_blocks(Path("DOC.md"), DOC)
    return [(c.line, c.key, c.output) for block in blocks for c in shell_commands(block)]


def test_shell_and_console_blocks_give_commands_with_their_lines() -> None:
    assert _commands() == [
        (4, "make venv", []),
        (5, 'curl -X POST -H "X: a # not a comment" -d \'{"a": 1}\' http://localhost:8421/api/v1/commands', []),
        (9, "halctl nodes list", []),
        (13, "halctl cost week", ["cost week 2026-11-18..2026-11-24 (7 days): total $52.75", "provider bill $8.00"]),
        (16, "halctl health", ["ok"]),
    ]


def test_comments_start_at_a_hash_after_a_blank_outside_quotes() -> None:
    assert strip_comment("make demo   # set up .venv") == "make demo"
    assert strip_comment("# a whole line") == ""
    assert strip_comment("echo 'a # b' x#y") == "echo 'a # b' x#y"


def test_inline_code_outside_blocks_with_escaped_bars() -> None:
    assert inline_code(DOC) == [(24, ".venv/bin/halctl nodes list"), (24, "halctl env status|drift")]


def test_synopsis_words_are_what_an_invocation_must_contain() -> None:
    synopsis = "halctl sessions logs <session-id> [--limit 100] [--type 'session.*'] [--follow]"
    assert synopsis_words(synopsis) == {
        "halctl",
        "sessions",
        "logs",
        "--limit",
        "100",
        "--type",
        "session.*",
        "--follow",
    }
    assert synopsis_words('halctl sessions answer <request-id> --answer LABEL[,LABEL...] [--answer ...] "text"') == {
        "halctl",
        "sessions",
        "answer",
        "--answer",
    }
    assert synopsis_words("halctl cost [today|week] [--by project|day]") == {
        "halctl",
        "cost",
        "today",
        "week",
        "--by",
        "project",
        "day",
    }


def test_split_commands_tells_pipes_from_alternatives() -> None:
    assert split_commands("curl -s localhost:8421/metrics | grep hal_o_swarm") == [
        "curl -s localhost:8421/metrics",
        "grep hal_o_swarm",
    ]
    assert split_commands("halctl env status|drift && make demo") == ["halctl env status|drift", "make demo"]
    assert split_commands("export T=$(halctl -o json health)") == ["halctl -o json health", "export T=SUBST"]


@pytest.mark.parametrize(
    "line",
    [
        "halctl sessions list [--status waiting] [--project P] [--node N]",
        "halctl -o json env status|drift --node n1",
        "halctl env manifest show | set <file>",
        ".venv/bin/hal-supervisor --config supervisor.json --validate",
        "sudo HALSWARM_AUTH_TOKEN=x hal-agent --config a.json --simulate 10",
        "sudo -u hal-o-swarm hal-supervisor db backup /x.db",
        "make demo",
        "curl -s localhost:8421/readyz | jq .components",
        'curl -H "Authorization: Bearer $T" http://localhost:8421/api/v1/sessions/<session-id>/events?limit=5',
        "journalctl -u hal-supervisor --since -1h",
    ],
)
def test_real_commands_pass(line: str) -> None:
    assert check_line(line) == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("halctl nodes lst", "halctl nodes: no command 'lst'"),
        ("halctl env check|provision --node N [--dry-run]", "halctl env check: no option --dry-run"),
        ("halctl sessions logs S --max-polls 2", "halctl sessions logs: no option --max-polls"),  # hidden: tests only
        ("hal-supervisor --config x.json --check", "hal-supervisor: no option --check"),
        ("make deploy", "make: no target 'deploy'"),
        ("sudo -u hal-o-swarm hal-supervisor db backupp /x", "hal-supervisor db: no command 'backupp'"),
        ("curl -s localhost:8421/api/v1/session", "curl: no route /api/v1/session"),
    ],
)
def test_wrong_commands_are_named(line: str, problem: str) -> None:
    assert check_line(line) == [problem]
