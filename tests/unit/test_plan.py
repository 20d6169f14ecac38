"""edgeorch.plan: the order of runs, the modes, which images to build, what a board lacks."""

import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.inventory import Board
from edgeorch.plan import bench_runs, deploy_steps, images_needed, parse_modes


def board(name: str, arch: Arch = Arch.ARM64) -> Board:
    return Board(name=name, host="127.0.0.1", user="root", arch=arch)


def runs(**overrides):
    kwargs = dict(framework="tflite", model="mobilenet_v2", modes=("docker", "bare"), repeat=3,
                  iterations=50, warmup=5, threads=0)
    return bench_runs(board("rpi4"), **{**kwargs, **overrides})


def test_modes_alternate_within_pairs():
    plan = runs()
    assert [(r.mode, r.pair) for r in plan] == [
        ("docker", 0), ("bare", 0), ("docker", 1), ("bare", 1), ("docker", 2), ("bare", 2)]
    assert {(r.board, r.framework, r.model, r.iterations, r.warmup, r.threads) for r in plan} == {
        ("rpi4", "tflite", "mobilenet_v2", 50, 5, 0)}


def test_run_keys_are_unique_and_name_the_run():
    plan = runs()
    assert len({r.key for r in plan}) == len(plan)
    assert plan[3].key == "rpi4/tflite-mobilenet_v2-bare-01"


def test_single_mode():
    assert [(r.mode, r.pair) for r in runs(modes=("bare",), repeat=2)] == [("bare", 0), ("bare", 1)]


@pytest.mark.parametrize("bad", [dict(repeat=0), dict(iterations=0), dict(warmup=-1), dict(threads=-1)])
def test_bad_counts(bad):
    with pytest.raises(ConfigError, match="--repeat and --iterations must be >= 1"):
        runs(**bad)


def test_zero_warmup_and_default_threads_are_fine():
    assert len(runs(warmup=0, threads=0, repeat=1)) == 2


@pytest.mark.parametrize("mode, modes", [
    ("docker", ("docker",)), ("bare", ("bare",)), ("both", ("docker", "bare"))])
def test_parse_modes(mode, modes):
    assert parse_modes(mode) == modes


@pytest.mark.parametrize("mode", ["Docker", "metal", ""])
def test_parse_modes_rejects(mode):
    with pytest.raises(ConfigError, match=repr(mode)) as e:
        parse_modes(mode)
    assert "both" in e.value.hint


def test_images_needed_one_per_framework_and_arch():
    boards = [board("rpi4a"), board("rpi3", Arch.ARMV7), board("rpi4b"), board("x86", Arch.AMD64)]
    assert images_needed(boards, ["tflite"]) == [
        ("tflite", Arch.AMD64), ("tflite", Arch.ARM64), ("tflite", Arch.ARMV7)]
    assert images_needed(boards[::2], ["tflite", "onnx"]) == [("onnx", Arch.ARM64), ("tflite", Arch.ARM64)]
    assert images_needed([], ["tflite"]) == []


MANIFEST = {"framework": "tflite", "version": "2.14.0", "bench_sha256": "b1", "wheels": {"a.whl": "00"}}


@pytest.mark.parametrize("remote_id, remote_manifest, steps", [
    ("sha256:abc", dict(MANIFEST), []),
    (None, dict(MANIFEST), ["image"]),
    ("sha256:old", dict(MANIFEST), ["image"]),
    ("sha256:abc", None, ["bundle"]),
    ("sha256:abc", {**MANIFEST, "wheels": {"a.whl": "01"}}, ["bundle"]),
    (None, None, ["image", "bundle"]),
    ("sha256:abc", {**MANIFEST, "bench_sha256": "b0"}, ["entrypoint"]),  # the wheels stay installed
    ("sha256:abc", {**MANIFEST, "bench_sha256": "b0", "version": "2.13.0"}, ["bundle"]),
])
def test_deploy_steps(remote_id, remote_manifest, steps):
    assert deploy_steps(remote_image_id=remote_id, image_id="sha256:abc",
                        remote_manifest=remote_manifest, manifest=MANIFEST) == steps


def test_deploy_steps_of_one_mode():
    assert deploy_steps(remote_image_id=None, image_id="sha256:abc", remote_manifest=None, manifest=MANIFEST,
                        modes=("docker",)) == ["image"]
    assert deploy_steps(remote_image_id=None, image_id="sha256:abc", remote_manifest=None, manifest=MANIFEST,
                        modes=("bare",)) == ["bundle"]
