"""A power meter's command may hold a token: the inventory names where it is on the board (env:NAME or @/path), and
its words are on no command line edgeorch makes, in no message and in no result; a command with arguments written in
the inventory itself is refused before anything runs, saying how to pass it now."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml

from edgeorch import runners
from edgeorch.bench.power import MeterSource, SourceError, find_source, meter_reference, resolve_meter
from edgeorch.errors import ConfigError
from edgeorch.inventory import load_inventory

from .test_watch import CHILD

TOKEN = "s3cret-t0ken-4711"
# a smart plug's client: it answers only with its token, which it reads from its environment
METER = f"""
import os, sys, time
time.sleep(0.05)
if os.environ.get("PLUG_TOKEN") != {TOKEN!r}:
    print("401 unauthorized for " + " ".join(sys.argv[1:]), file=sys.stderr)
    sys.exit(1)
print("2.5 W")
"""


def _private(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return f"@{path}"


@pytest.fixture
def meter(tmp_path) -> list[str]:
    (tmp_path / "plug.py").write_text(METER)
    return [sys.executable, str(tmp_path / "plug.py")]


def test_a_file_on_the_board_holds_the_command_and_its_token(tmp_path, meter):
    ref = _private(tmp_path / "meter.json", json.dumps({"command": meter, "env": {"PLUG_TOKEN": TOKEN}}))
    source, notes = find_source(meter=[ref])
    assert notes == [] and source.read() == 2.5
    assert source.name.startswith(f"meter:{os.path.basename(sys.executable)}#") and TOKEN not in source.name
    assert f"from {ref}" in source.shown


def test_an_environment_variable_of_the_board_holds_the_command(tmp_path, meter):
    argv, env, origin = resolve_meter(["env:PLUG_METER"], environ={"PLUG_METER": " ".join(meter) + " --bus 1"})
    assert argv == [*meter, "--bus", "1"] and env == {} and origin == "env:PLUG_METER"
    with pytest.raises(SourceError, match="env:NOPE is not set in the environment"):
        resolve_meter(["env:NOPE"], environ={})


def test_the_token_is_on_no_command_line_while_the_watcher_measures(tmp_path, meter):
    """The watcher's own command line holds the reference, the meter's holds its program: a `ps` on the board while
    it samples shows the token nowhere, and neither does the run's document."""
    ref = _private(tmp_path / "meter.json", json.dumps({"command": meter, "env": {"PLUG_TOKEN": TOKEN}}))
    (tmp_path / "child.py").write_text(CHILD)
    with open(tmp_path / "out", "w") as stdout, open(tmp_path / "err", "w") as stderr:
        watcher = subprocess.Popen([sys.executable, "-m", "edgeorch.bench.watch", "--interval", "0.05", "--window",
                                    "0.2", "--energy", "--idle", "0.3", "--power-meter", json.dumps([ref]), "--",
                                    sys.executable, str(tmp_path / "child.py"), "1.5"], stdout=stdout, stderr=stderr)
    seen, deadline = 0, time.monotonic() + 60
    try:
        while watcher.poll() is None and time.monotonic() < deadline:
            for proc in psutil.process_iter(["cmdline"]):
                line = " ".join(proc.info["cmdline"] or ())
                assert TOKEN not in line
                seen += "plug.py" in line
            time.sleep(0.02)
    finally:
        watcher.kill() if watcher.poll() is None else None
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert watcher.wait() == 0, err
    assert seen  # the meter was caught running, its token not on its line
    assert TOKEN not in out and TOKEN not in err and json.loads(out)["energy"]["avg_power_w"] == 2.5


def test_what_the_meter_prints_back_of_its_words_is_never_repeated(tmp_path, meter):
    with pytest.raises(SourceError, match="exited 1") as e:
        MeterSource([*meter, "--token", TOKEN]).read()
    assert TOKEN not in str(e.value) and "401 unauthorized for *** ***" in str(e.value)


@pytest.mark.parametrize("spoil, says", [
    (lambda p: p.chmod(0o620), "could have been written by another login"),
    (lambda p: p.chmod(0o602), "could have been written by another login"),
    (lambda p: (p.rename(p.with_name("real")), p.symlink_to(p.with_name("real"))), "a link is refused"),
    (lambda p: p.write_text("{not json"), "is not valid JSON"),
    (lambda p: p.write_text("# nothing"), "holds no command")])
def test_a_meter_file_that_another_login_could_write_or_that_is_broken_is_refused(tmp_path, meter, spoil, says):
    path = tmp_path / "meter"
    ref = _private(path, " ".join(meter))
    spoil(path)
    source, [note] = find_source(meter=[ref])
    assert source is None and says in note and "no board sensor used instead" in note


def _board(meter: list[str]):
    return SimpleNamespace(name="pi4", power_meter=tuple(meter))


def _inventory(tmp_path, meter: list[str]):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": [{"name": "pi4", "host": "10.0.0.4", "user": "pi", "arch": "arm64",
                                                "power_meter": meter}]}))
    return load_inventory(path)


def test_a_command_with_arguments_in_the_inventory_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"board 'pi4', field `power_meter`: is a command with arguments "
                                          r"\(program plug\)") as e:
        _inventory(tmp_path, ["/usr/bin/plug", "--token", TOKEN])
    assert TOKEN not in str(e.value) and "@/" in e.value.hint and "env:NAME" in e.value.hint
    assert "chmod 600" in e.value.hint


@pytest.mark.parametrize("words, kind", [(["env:PLUG"], "env"), (["@/etc/edgeorch/meter"], "file"),
                                         (["/usr/local/bin/read-meter"], "program"), (["ina260", "--bus", "1"], None),
                                         (["env:1BAD"], None), (["@relative"], None)])
def test_what_the_inventory_may_give_and_what_reaches_the_boards_command_line(tmp_path, words, kind):
    assert meter_reference(words) == kind
    if kind:
        _inventory(tmp_path, words)  # taken
        line = " ".join(runners.Measures().watch_args(_board(words)))
        assert json.dumps(words) in line  # the reference itself, as the board resolves it
