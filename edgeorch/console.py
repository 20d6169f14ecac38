"""The one rich Console, and the helper that echoes every local command before running it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from rich.console import Console
from rich.markup import escape

from .errors import SetupError

# Piped output (CI logs, `| tee`) gets a width that fits the results table instead of 80, unless $COLUMNS says one.
console = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)


def echo(command: list[str] | str) -> None:
    """Show an external command the way a shell trace would: `+ docker build ...`."""
    text = command if isinstance(command, str) else shlex.join(str(c) for c in command)
    console.print(f"[dim]+ {escape(text)}[/dim]", soft_wrap=True)  # a name like [/x] is text, not markup


def run_local(command: list[str], *, what: str, hint: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a local command, echoed; a failure is a SetupError that says what was being done."""
    echo(command)
    try:
        return subprocess.run([str(c) for c in command], check=True, text=True,
                              capture_output=True, **kwargs)
    except FileNotFoundError as e:
        raise SetupError(f"{what}: {command[0]} is not installed", hint=hint) from e
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or e.stdout or "").strip().splitlines()[-8:])
        raise SetupError(f"{what} failed (exit {e.returncode}):\n{tail}", hint=hint) from e
