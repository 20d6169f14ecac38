"""edgeorch.console: every command recorded with its start, board, duration and exit code (held until the run
directory is known, then in its commands.log), shown with --verbose, and a failure always named with its output."""

import re
import subprocess
import time

import invoke
import pytest
from rich.console import Console

from edgeorch import console as con
from edgeorch.errors import BoardError, SetupError
from edgeorch.transport import remote

ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  (\S+) +(\d+\.\d\d) s  exit (\S+) +(\S.*)$")


@pytest.fixture
def log(monkeypatch):
    """A fresh command log, as a task begins it (not verbose), and the console it would print on, recording."""
    fresh = con.CommandLog()
    fresh.verbose = False
    fresh.begin()
    monkeypatch.setattr(con, "commands", fresh)
    monkeypatch.setattr(con, "console", Console(record=True, width=100))
    return fresh


def entries(path):
    """(where, seconds, exit, command) of each entry of a commands.log."""
    return [ENTRY.match(line).groups() for line in path.read_text().splitlines() if ENTRY.match(line)]


def printed() -> str:
    return con.console.export_text()


def test_commands_are_held_until_the_run_directory_is_known_then_written_there(log, tmp_path):
    con.run_local(["true"], what="nothing", hint="-")
    with con.recording("docker save edgeorch/x:1", board=None) as rec:
        rec.exit_code = 0
    run_log = tmp_path / "run" / "commands.log"
    assert not run_log.exists() and log.path is None
    log.attach(run_log)
    assert [(e[0], e[2], e[3]) for e in entries(run_log)] == [("local", "0", "true"),
                                                             ("local", "0", "docker save edgeorch/x:1")]
    with con.recording("uname -m", board="rpi4") as rec:  # once attached, written as it ends
        rec.exit_code = 0
    assert entries(run_log)[-1][::3] == ("rpi4", "uname -m")
    assert run_log.read_text().startswith("# ") and " pid " in run_log.read_text().splitlines()[0]  # who wrote it


def test_a_task_without_a_run_directory_writes_to_the_fallback_when_it_ends(log, tmp_path):
    log.attach(tmp_path / "a" / "commands.log")
    log.begin()  # the next task's commands are its own
    con.run_local(["true"], what="nothing", hint="-")
    assert len(entries(tmp_path / "a" / "commands.log")) == 0
    log.close(tmp_path / "commands.log")
    log.close(tmp_path / "commands.log")  # nothing held twice
    assert [e[3] for e in entries(tmp_path / "commands.log")] == ["true"]


def test_each_entry_has_its_duration_and_exit_code_and_a_failure_its_output(log, tmp_path):
    with con.recording("sleep 0.2") as rec:
        time.sleep(0.2)
        rec.exit_code = 0
    with pytest.raises(SetupError) as e:
        con.run_local(["sh", "-c", "echo first; echo 'no space left' >&2; exit 3", "sh"], what="packing the rootfs",
                      hint="check free disk space")
    with pytest.raises(TimeoutError), con.recording("ssh-keyscan board") as rec:
        raise TimeoutError
    log.attach(tmp_path / "commands.log")
    (_, slept, code, _), (_, _, failed, command), (_, _, none, _) = entries(tmp_path / "commands.log")
    assert 0.2 <= float(slept) < 2 and code == "0"
    assert failed == "3" and command.startswith("sh -c 'echo first;")
    text = (tmp_path / "commands.log").read_text()
    assert "    | no space left" in text  # a failure's output tail, under its entry
    assert none == "-" and "    # ended by TimeoutError" in text
    # the error names the command that failed, and its output
    assert "`sh -c 'echo first; echo '\"'\"'no space left" in e.value.message and "no space left" in e.value.message
    assert "(exit 3)" in e.value.message


def test_a_command_that_is_not_installed_is_logged_and_named(log, tmp_path):
    with pytest.raises(SetupError, match="no-such-tool-here is not installed"):
        con.run_local(["no-such-tool-here", "--x"], what="making a thing", hint="install it")
    log.attach(tmp_path / "commands.log")
    assert entries(tmp_path / "commands.log")[0][2:] == ("127", "no-such-tool-here --x")


def test_quiet_by_default_and_verbose_shows_each_command_as_it_ends(log):
    con.run_local(["true"], what="nothing", hint="-")
    assert printed() == ""
    log.verbose = True
    con.run_local(["echo", "a [b] c"], what="nothing", hint="-")
    with con.recording("sh -c 'line one\nline two'", board="rpi3") as rec:
        rec.exit_code = 0
    out = printed().splitlines()
    assert re.fullmatch(r"\+ echo 'a \[b\] c'  \(\d\.\d\d s, exit 0\)", out[0])  # text, not markup
    assert out[1].startswith("+ [rpi3] sh -c 'line one ... (2 lines)  (")


def test_verbose_shows_a_failed_command_with_its_output_tail(log):
    log.verbose = True
    with pytest.raises(SetupError):
        con.run_local(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done; exit 1"], what="x",
                      hint="-")
    out = printed()
    assert "exit 1)" in out and "line10" in out and "line3" in out and "line2\n" not in out  # its last 8 lines


def test_outside_a_task_nothing_is_held_before_a_run_directory(monkeypatch, tmp_path):
    library = con.CommandLog()
    monkeypatch.setattr(con, "commands", library)
    con.run_local(["true"], what="nothing", hint="-")  # edgeorch used as a library: no task to end and write it
    library.close(tmp_path / "commands.log")
    assert not (tmp_path / "commands.log").exists()
    library.attach(tmp_path / "run" / "commands.log")  # a bench it runs still logs its own commands
    con.run_local(["true"], what="nothing", hint="-")
    assert len(entries(tmp_path / "run" / "commands.log")) == 1


def test_edgeorch_verbose_in_the_environment_turns_it_on(monkeypatch):
    monkeypatch.setenv("EDGEORCH_VERBOSE", "1")
    assert con.CommandLog().verbose
    monkeypatch.setenv("EDGEORCH_VERBOSE", "0")
    assert not con.CommandLog().verbose


class LocalBoard:
    """A connection whose commands run here, through the shell, as a board's sshd would run them."""

    class client:  # noqa: N801 - the shape of fabric's Connection.client
        @staticmethod
        def get_transport():
            return type("Transport", (), {"is_active": lambda self: True})()

    def run(self, command, **kwargs):
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return invoke.Result(stdout=done.stdout, stderr=done.stderr, exited=done.returncode, command=command)


def test_a_board_command_is_logged_with_its_board_and_its_failure_names_it(log, tmp_path):
    assert remote(LocalBoard(), ["echo", "it's $HOME"], board="rpi4").stdout == "it's $HOME\n"  # quoted, never expanded
    assert remote(LocalBoard(), ["sh", "-c", "exit 4"], board="rpi4", warn=True).exited == 4
    with pytest.raises(BoardError) as e:
        remote(LocalBoard(), ["sh", "-c", 'echo "disk full" >&2; exit 2'], board="rpi4")
    assert "board rpi4: `sh -c 'echo \"disk full\" >&2; exit 2'` failed (exit 2)" in e.value.message
    assert "disk full" in e.value.message
    log.attach(tmp_path / "commands.log")
    assert [(w, code) for w, _, code, _ in entries(tmp_path / "commands.log")] == [("rpi4", "0"), ("rpi4", "4"),
                                                                                  ("rpi4", "2")]
    assert "    | disk full" in (tmp_path / "commands.log").read_text()


TASKS = ("bench", "compare", "calibrate", "explain", "deploy", "check", "clean", "agree", "sim.up", "sim.down")


@pytest.mark.parametrize("name", TASKS)
def test_each_task_that_runs_commands_takes_verbose_and_v_is_never_another_option(name):
    import tasks

    [verbose] = [a for a in tasks.ns[name].get_arguments() if "v" in a.names]
    assert verbose.name == "verbose" and verbose.names == ("verbose", "v") and "commands.log" in verbose.help


def test_a_task_given_verbose_turns_it_on_and_starts_its_own_log(log, monkeypatch, tmp_path):
    import tasks

    monkeypatch.setattr(tasks, "commands", log)
    log.attach(tmp_path / "an earlier run's commands.log")
    tasks.reported(lambda c, verbose=False: None)(None, verbose=False)
    assert not log.verbose and log.path is None  # what it runs is held until it makes a run directory
    con.run_local(["true"], what="nothing", hint="-")
    tasks.reported(lambda c, verbose=False: None)(None, verbose=True)
    assert log.verbose
    log.close(tmp_path / "commands.log")
    assert len(entries(tmp_path / "commands.log")) == 1
