"""State shared by halctl's commands: injected I/O, resolved settings, output format.

Tests (and anything embedding halctl) pass an :class:`Io` as ``obj`` to
``cli.main([...], standalone_mode=False, obj=Io(...))`` to capture output in their own
rich consoles and to supply the environment and current directory. The root command
replaces it with an :class:`App` that every subcommand finds with :func:`app_of`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NoReturn, TypeVar

import asyncclick as click
import attrs
import orjson
from rich.console import Console
from rich.text import Text

from halswarm.cli.client import ApiClient, ClientTimeouts, open_api
from halswarm.cli.settings import Settings
from halswarm.convert import unstructure
from halswarm.timeutil import Clock, system_now

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

C = TypeVar("C", bound=click.Command)

__all__ = ["OUTPUT_FORMATS", "App", "Io", "OutputFormat", "app_of", "fail", "output_option"]

OutputFormat = Literal["table", "json"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("table", "json")


def _environ() -> Mapping[str, str]:
    return os.environ


def _stderr_console() -> Console:
    return Console(stderr=True)


@attrs.frozen
class Io:
    """Everything halctl reads or writes outside itself; tests inject their own."""

    console: Console = attrs.field(factory=Console)
    err_console: Console = attrs.field(factory=_stderr_console)
    env: Mapping[str, str] = attrs.field(factory=_environ)
    cwd: Path = attrs.field(factory=Path.cwd)
    now: Clock = system_now
    timeouts: ClientTimeouts = attrs.field(factory=ClientTimeouts)


@attrs.define
class App:
    """What a subcommand needs: I/O, where the supervisor is, and how to print."""

    io: Io
    settings: Settings
    output: OutputFormat = "table"

    @property
    def json(self) -> bool:
        """True when ``--output json`` was asked for."""
        return self.output == "json"

    def open_api(self) -> AbstractAsyncContextManager[ApiClient]:
        """An API client for the resolved URL and token (closed when the block ends)."""
        return open_api(
            self.settings.url, self.settings.token, timeouts=self.io.timeouts, ca_file=self.settings.ca_file
        )

    def print(self, *renderables: object) -> None:
        """Print rich renderables to standard output."""
        self.io.console.print(*renderables)

    def print_lines(self, renderables: Iterable[object]) -> None:
        """Print each renderable on its own line(s); long text lines are not wrapped."""
        for renderable in renderables:
            self.io.console.print(renderable, soft_wrap=isinstance(renderable, Text))

    def print_json(self, value: object, *, indent: bool = True) -> None:
        """Print attrs values or plain data as JSON, unstyled, for scripts."""
        option = orjson.OPT_INDENT_2 if indent else 0
        self.io.console.out(orjson.dumps(unstructure(value), option=option).decode(), highlight=False)

    def show(self, body: object, *renderables: object) -> None:
        """Print *body* as JSON with ``--output json``, else the rich *renderables*."""
        if self.json:
            self.print_json(body)
        else:
            self.print(*renderables)

    def warn(self, message: str) -> None:
        """One line on standard error (never wrapped)."""
        self.io.err_console.print(Text(message), soft_wrap=True)

    def fail(self, exit_code: int, message: str) -> NoReturn:
        """Print ``error: message`` on standard error and exit with *exit_code*."""
        fail(self.io, exit_code, message)


def fail(io: Io, exit_code: int, message: str) -> NoReturn:
    """Print ``error: message`` as one line on standard error and exit with *exit_code*.

    Raises:
        click.exceptions.Exit: always; click exits with the code (or, in
            ``standalone_mode=False``, returns it from ``cli.main``).
    """
    line = Text("error: ", style="bold red")
    line.append(message)
    io.err_console.print(line, soft_wrap=True)
    raise click.exceptions.Exit(exit_code)


def app_of(ctx: click.Context) -> App:
    """The :class:`App` the root command made for this invocation."""
    app = ctx.find_object(App)
    if app is None:  # only when a subcommand is invoked without the root group
        raise click.UsageError("halctl subcommands must be run through the halctl group", ctx)
    return app


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        app = app_of(ctx)
        app.output = "json" if value == "json" else "table"


def output_option(command: C) -> C:
    """``-o/--output`` on a subcommand too, so ``halctl sessions list -o json`` works.

    Apply it above ``@group.command()`` (it takes the finished command).
    """
    option = click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default=None,
        expose_value=False,
        callback=_set_output,
        help="Output format (overrides the global -o).",
    )
    return option(command)
