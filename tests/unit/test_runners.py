"""edgeorch.runners: what reaches the board's shell and Docker's parsers."""

import csv
import shlex

from edgeorch.runners import mount_arg, watched


def test_a_bind_mount_of_a_file_with_commas_and_quotes_parses_back_to_its_path():
    path = '/root/edgeorch/models/0123-my net, "v2".tflite'
    fields = next(csv.reader([mount_arg(path, "/opt/edgeorch/models/m.tflite")]))
    assert fields == ["type=bind", f"source={path}", "target=/opt/edgeorch/models/m.tflite", "readonly"]


def test_the_watched_command_quotes_every_word():
    cmd = watched("python3", "/root/my dir", ["docker", "start", "-a", "abc;rm -rf /"], cwd="/x y")
    assert shlex.split(cmd.split(" && ", 1)[1]) == ["python3", "-m", "edgeorch_bench.watch", "--cwd", "/x y", "--",
                                                    "docker", "start", "-a", "abc;rm -rf /"]
    assert cmd.startswith("cd '/root/my dir' && ")
