"""edgeorch.deploy.check_versions: both modes must run the recipe's framework version and the same entrypoint."""

import json
from types import SimpleNamespace

import pytest

from edgeorch import bench
from edgeorch.arch import Arch
from edgeorch.deploy import check_versions, version_matches
from edgeorch.errors import BoardError
from edgeorch.runners import Answer


def deployment(recipe_version, reported, modes=("docker", "native"), facts=None):
    """A deployment whose modes answer their probe with framework version `reported[mode]` (and `facts[mode]`)."""
    def runner(conn, arm, timeout):
        doc = {"schema": bench.PROBE_SCHEMA, "status": "ok", "bench": {"sha256": "b" * 64},
               "framework": {"name": "tensorrt", "version": reported[arm.mode]},
               "facts": {"machine": "aarch64", "bits": 64, "python": "3.8.10", "numpy": "1.17.4",
                         **(facts or {}).get(arm.mode, {})}}
        return SimpleNamespace(execute=lambda args, files: Answer(json.dumps(doc), "", 0))
    return SimpleNamespace(board=SimpleNamespace(name="orin", arch=Arch.ARM64), modes=modes, runner=runner,
                           userland_dir="/w/tflite-2.14.0-bare",
                           image=SimpleNamespace(framework="tensorrt", version=recipe_version, bench_sha256="b" * 64))


def test_a_vendor_framework_takes_the_version_its_image_reports():
    version, notes = check_versions(None, deployment("vendor", {"docker": "8.5.2.2", "native": "8.5.2.2"}))
    assert version == "8.5.2.2" and notes == ()


def test_a_vendor_framework_must_still_be_the_same_in_both_modes():
    with pytest.raises(BoardError, match="tensorrt versions differ: .*docker mode has 8.5.2.2, native mode has 8.4.1"):
        check_versions(None, deployment("vendor", {"docker": "8.5.2.2", "native": "8.4.1"}))


def test_a_pinned_version_must_match_and_one_mode_alone_is_checked_too():
    with pytest.raises(BoardError, match="the image expects 2.14.0, docker mode has 2.13.0"):
        check_versions(None, deployment("2.14.0", {"docker": "2.13.0", "native": "2.13.0"}))
    assert check_versions(None, deployment("2.14.0", {"native": "2.14.0"}, modes=("native",)))[0] == "2.14.0"
    assert version_matches("2.13.0", "2.13.0+cpu") and not version_matches("2.13.0", "2.13.1")


def test_trailing_zeros_do_not_make_another_version():
    assert version_matches("1.21.0", "1.21") and version_matches("4.10.0", "4.10.0")  # Debian's onnxruntime
    assert not version_matches("1.21.0", "1.2") and not version_matches("1.21.0", "1.21.1")
    assert not version_matches("10", "1")


BUNDLE = {"executable": "/w/tflite-2.14.0-bare/root/usr/bin/python3.11",
          "libraries": ["/w/tflite-2.14.0-bare/root/usr/lib/aarch64-linux-gnu/libc.so.6"]}


def test_the_bare_run_is_the_images_userland_or_the_deploy_fails():
    both = {"docker": "2.14.0", "bare": "2.14.0"}
    assert check_versions(None, deployment("2.14.0", both, ("docker", "bare"), {"bare": BUNDLE})) == ("2.14.0", ())
    # a library the loader took from the board's own /usr/lib: not the image's bytes
    board_lib = {**BUNDLE, "libraries": [*BUNDLE["libraries"], "/usr/lib/aarch64-linux-gnu/libgomp.so.1"]}
    with pytest.raises(BoardError, match="outside its bundle /w/tflite-2.14.0-bare: /usr/lib/aarch64-linux-gnu/libg"):
        check_versions(None, deployment("2.14.0", both, ("docker", "bare"), {"bare": board_lib}))
    with pytest.raises(BoardError, match="outside its bundle .*: /usr/bin/python3"):  # the board's own Python
        check_versions(None, deployment("2.14.0", both, ("docker", "bare"),
                                        {"bare": {**BUNDLE, "executable": "/usr/bin/python3"}}))
    with pytest.raises(BoardError, match="bare run's numpy differ from the Docker run's"):
        check_versions(None, deployment("2.14.0", both, ("docker", "bare"), {"bare": {**BUNDLE, "numpy": "2.2.4"}}))
