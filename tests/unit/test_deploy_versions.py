"""edgeorch.deploy.check_versions: both modes must run the recipe's framework version and the same entrypoint."""

import json
from types import SimpleNamespace

import pytest

from edgeorch import bench
from edgeorch.arch import Arch
from edgeorch.deploy import check_versions, version_matches
from edgeorch.errors import BoardError
from edgeorch.runners import Answer


def deployment(recipe_version, reported, modes=("docker", "bare")):
    """A deployment whose modes answer their probe with framework version `reported[mode]`."""
    def runner(conn, arm, timeout):
        doc = {"schema": bench.PROBE_SCHEMA, "status": "ok", "bench": {"sha256": "b" * 64},
               "framework": {"name": "tensorrt", "version": reported[arm.mode]},
               "facts": {"machine": "aarch64", "bits": 64, "python": "3.8.10", "numpy": "1.17.4"}}
        return SimpleNamespace(execute=lambda args, files: Answer(json.dumps(doc), "", 0))
    return SimpleNamespace(board=SimpleNamespace(name="orin", arch=Arch.ARM64), modes=modes, runner=runner,
                           image=SimpleNamespace(framework="tensorrt", version=recipe_version, bench_sha256="b" * 64))


def test_a_vendor_framework_takes_the_version_its_image_reports():
    version, notes = check_versions(None, deployment("vendor", {"docker": "8.5.2.2", "bare": "8.5.2.2"}))
    assert version == "8.5.2.2" and notes == ()


def test_a_vendor_framework_must_still_be_the_same_in_both_modes():
    with pytest.raises(BoardError, match="tensorrt versions differ: .*docker mode has 8.5.2.2, bare mode has 8.4.1"):
        check_versions(None, deployment("vendor", {"docker": "8.5.2.2", "bare": "8.4.1"}))


def test_a_pinned_version_must_match_and_one_mode_alone_is_checked_too():
    with pytest.raises(BoardError, match="the image expects 2.14.0, docker mode has 2.13.0"):
        check_versions(None, deployment("2.14.0", {"docker": "2.13.0", "bare": "2.13.0"}))
    assert check_versions(None, deployment("2.14.0", {"bare": "2.14.0"}, modes=("bare",)))[0] == "2.14.0"
    assert version_matches("2.13.0", "2.13.0+cpu") and not version_matches("2.13.0", "2.13.1")


def test_trailing_zeros_do_not_make_another_version():
    assert version_matches("1.21.0", "1.21") and version_matches("4.10.0", "4.10.0")  # Debian's onnxruntime
    assert not version_matches("1.21.0", "1.2") and not version_matches("1.21.0", "1.21.1")
    assert not version_matches("10", "1")
