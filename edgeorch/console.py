"""The one rich Console, the story a task tells on it, and the log of every external command edgeorch runs.

Every command, local or on a board, is recorded with its start, board, duration and exit code: kept in memory until
the run directory is known, then appended to its commands.log (`results/commands.log` for a task that makes none).
With `--verbose` (or EDGEORCH_VERBOSE=1) each is shown on the console too, once it has ended.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .errors import SetupError

# Piped output (CI logs, `| tee`) gets a width that fits the results table instead of 80, unless $COLUMNS says one.
console = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)

TAIL = 8  # lines of a failed command's output kept in the log and shown


def tail(output: str, lines: int = TAIL) -> str:
    """The last `lines` lines of a command's output."""
    return "\n".join((output or "").strip().splitlines()[-lines:])




@dataclass
class Command:
    """One external command as the log keeps it: what ran where, when, for how long, and how it ended."""
    text: str
    board: str | None = None
    started: float = 0.0             # time.time() at its start
    seconds: float = 0.0
    exit_code: int | None = None     # None: it ended without one (see `note`)
    note: str = ""                   # why there is no exit code, or what else to know ("in the background")
    output: str = ""                 # what it printed; a failure's tail is kept

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 and not (self.exit_code is None and self.note.startswith("started"))

    def outcome(self) -> str:
        return f"exit {self.exit_code}" if self.exit_code is not None else (self.note or "no exit code")

    def entry(self) -> str:
        """Its lines in commands.log: start, where, duration, exit code (`-`: none) and the command; its further
        lines indented, then `# ` a note, `| ` a failure's output tail."""
        when = datetime.datetime.fromtimestamp(self.started).isoformat(sep=" ", timespec="milliseconds")
        code = "-" if self.exit_code is None else str(self.exit_code)
        first, *more = self.text.splitlines() or [""]
        lines = [f"{when}  {self.board or 'local':<13}  {self.seconds:8.2f} s  exit {code:<3}  {first}",
                 *(f"    {line}" for line in more), *([f"    # {self.note}"] if self.note else [])]
        if self.failed and self.output.strip():
            lines += [f"    | {line}" for line in tail(self.output).splitlines()]
        return "\n".join(lines) + "\n"

    def show(self) -> None:
        """On the console, as --verbose shows it: the command's first line, its time and outcome (a failure's tail)."""
        first, *more = self.text.splitlines() or [""]
        where = f"[{self.board}] " if self.board else ""
        text = f"+ {where}{first}" + (f" ... ({len(more) + 1} lines)" if more else "")
        style = "red" if self.failed else "dim"
        console.print(f"[{style}]{escape(text)}  ({self.seconds:.2f} s, {escape(self.outcome())})[/]", soft_wrap=True)
        if self.failed and self.output.strip():
            console.print(f"[{style}]{escape(tail(self.output))}[/]", soft_wrap=True)


class CommandLog:
    """Where recorded commands go: once a task has begun, a buffer until `attach` names the file (a run's
    commands.log), then that file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._path: Path | None = None
        self._holding = False  # outside a task (edgeorch used as a library) nothing is held before `attach`
        self._headed: set[Path] = set()
        self._since = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")  # this edgeorch's start
        self.verbose = os.environ.get("EDGEORCH_VERBOSE", "") not in ("", "0")

    @property
    def path(self) -> Path | None:
        """The file commands go to now; None while they are held in memory."""
        return self._path

    def begin(self, *, verbose: bool = False) -> None:
        """A task begins: its commands are held until its run directory is known (verbose: shown too)."""
        with self._lock:
            self._path, self._holding = None, True
        self.verbose = self.verbose or verbose

    def add(self, command: Command) -> None:
        """Log a command that ended, and show it when verbose."""
        with self._lock:
            if self._path is not None:
                self._write(self._path, [command.entry()])
            elif self._holding:
                self._pending.append(command.entry())
        if self.verbose:
            command.show()

    def attach(self, path: Path) -> None:
        """From now on write to `path`, the commands held so far first."""
        with self._lock:
            self._path = path
            self._write(path, self._pending)
            self._pending = []

    def close(self, fallback: Path) -> None:
        """Write the commands still held to `fallback`: the log of a task that made no run directory."""
        with self._lock:
            if self._pending:
                self._write(fallback, self._pending)
            self._pending = []

    def _write(self, path: Path, entries: list[str]) -> None:
        if path not in self._headed:  # who wrote what follows: several tasks may share results/commands.log
            argv = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
            entries = [f"# {self._since} pid {os.getpid()}: {argv.replace(chr(10), ' ')}\n", *entries]
            self._headed.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # appended, never through a link left at its name (O_NOFOLLOW: a link there is an error, not a redirection)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with open(fd, "a", encoding="utf-8") as f:
            f.writelines(entries)


commands = CommandLog()


@contextmanager
def recording(text: str, board: str | None = None) -> Iterator[Command]:
    """Log the command run in the block when it ends; the block sets the Command's exit code and output (an
    exception leaving the block is logged as the command's end, by its kind)."""
    command = Command(text=text, board=board, started=time.time())
    clock = time.monotonic()
    try:
        yield command
    except BaseException as e:
        if command.exit_code is None and not command.note:
            command.note = f"ended by {type(e).__name__}"
        raise
    finally:
        command.seconds = time.monotonic() - clock
        commands.add(command)


def shell(command: list) -> str:
    """A command line as a shell would take it, every word quoted."""
    return shlex.join(str(c) for c in command)


def run_local(command: list, *, what: str, hint: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a local command, recorded; a failure is a SetupError that says what was being done, and by what command."""
    line = shell(command)
    with recording(line) as rec:
        try:
            done = subprocess.run([str(c) for c in command], text=True, capture_output=True, **kwargs)
        except FileNotFoundError as e:
            rec.exit_code, rec.note = 127, "not installed"
            raise SetupError(f"{what}: {command[0]} is not installed", hint=hint) from e
        rec.exit_code, rec.output = done.returncode, (done.stderr or done.stdout or "")
    if done.returncode:
        short = line if len(line) <= 200 else line[:197] + "..."
        raise SetupError(f"{what} failed (exit {done.returncode}): `{short}`\n{tail(rec.output)}", hint=hint)
    return done


class _Rate(ProgressColumn):
    """A transfer's MB/s (nothing for the tasks that count runs)."""
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} MB/s" if task.fields.get("unit") == "MB" and task.speed else "")


class Reporter:
    """How library code tells the user what happens: the tasks hand one in (this terminal's console), a test its
    own; library modules never print. Text from boards, models and users is escaped here, never read as markup."""

    def __init__(self, out: Console | None = None) -> None:
        self.console = out or console

    def show(self, renderable) -> None:
        """A table, or a line already made safe (its external strings escaped)."""
        self.console.print(renderable, soft_wrap=isinstance(renderable, str))

    def step(self, text: str, board: str | None = None) -> None:
        """One line of the story: what a step did, for a board when it names one (plain text, never markup)."""
        self.show((f"[bold]{escape(board)}[/]: " if board else "") + escape(text))

    def note(self, head: str, text: str = "") -> None:
        """Something left out or retried, in yellow: `head`, then `text` plain."""
        self.show(f"[yellow]{escape(head)}[/]" + (f": {escape(text)}" if text else ""))

    def warn(self, text: str) -> None:
        """What makes a result doubtful or a step fail, in red."""
        self.show(f"[bold red]warning:[/] {escape(text)}")

    def failed(self, name: str, what: str, err: Exception) -> None:
        """A board's failure of a step, its error whole."""
        self.show(f"[bold red]{escape(name)}: {what} failed[/]\n{escape(str(err))}")

    def status(self, text: str):
        """A spinner while `text` goes on (nothing where the output is not a terminal)."""
        return self.console.status(escape(text))

    def progress(self) -> Bars:
        """Bars for long work (transfers count MB, runs count pairs): live on a terminal and gone when done, nothing
        at all where the output is not one (CI, a pipe): the story lines say what was done."""
        return Bars(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed:.1f}/{task.total:.1f} {task.fields[unit]}"), _Rate(),
                    TimeElapsedColumn(), console=self.console, transient=True, disable=not self.console.is_terminal,
                    out=self)


class Bars(Progress):
    """A reporter's progress bars, which the steps they are handed to also tell the story through (`out`)."""

    def __init__(self, *columns, out: Reporter, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.out = out


REPORTER = Reporter()  # the terminal's: what a library call is given when its caller hands in none
