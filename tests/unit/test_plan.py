"""edgeorch.plan: the order of runs, the modes, what a board lacks."""

import functools

import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.inventory import Board
from edgeorch.plan import (
    Arm,
    StopRule,
    bench_cell,
    deploy_steps,
    describe,
    mode_arms,
    parse_modes,
)


def board(name: str, arch: Arch = Arch.ARM64) -> Board:
    return Board(name=name, host="127.0.0.1", user="root", arch=arch)


def runs(**overrides):
    kwargs = dict(framework="tflite", model="mobilenet_v2", modes=("docker", "bare"), repeat=3,
                  iterations=50, warmup=5, threads=0)
    kwargs = {**kwargs, **overrides}
    repeat, modes = kwargs.pop("repeat"), kwargs.pop("modes")
    cell = bench_cell(board("rpi4"), arms=mode_arms(modes), **kwargs)
    return [run for pair in range(repeat) for run in cell.runs(pair)]


def test_the_order_is_counterbalanced_abba():
    plan = runs(repeat=4)
    assert [(r.mode, r.pair, r.position) for r in plan] == [
        ("docker", 0, 0), ("bare", 0, 1), ("bare", 1, 0), ("docker", 1, 1),
        ("docker", 2, 0), ("bare", 2, 1), ("bare", 3, 0), ("docker", 3, 1)]
    # each mode runs first as often as second: drift over the session falls on both alike
    assert sum(r.position for r in plan if r.mode == "docker") == sum(r.position for r in plan if r.mode == "bare")
    assert {(r.board, r.framework, r.model, r.iterations, r.warmup, r.threads) for r in plan} == {
        ("rpi4", "tflite", "mobilenet_v2", 50, 5, 0)}


def test_every_arm_of_a_round_runs_once_in_reversed_order_on_odd_rounds():
    arms = (Arm(label="docker", mode="docker"), Arm(label="bare", mode="bare"),
            Arm(label="docker+seccomp", mode="docker", docker_args=("--security-opt", "seccomp=unconfined")))
    cell = bench_cell(board("x86", Arch.AMD64), framework="tflite", model="tiny", arms=arms, iterations=5, warmup=1,
                      threads=0, min_time=2)
    assert [r.arm for r in cell.runs(0)] == ["docker", "bare", "docker+seccomp"]
    assert [r.arm for r in cell.runs(1)] == ["docker+seccomp", "bare", "docker"]
    assert cell.runs(1)[0].docker_args == ("--security-opt", "seccomp=unconfined")
    assert {r.min_time for r in cell.runs(0)} == {2}
    assert len({r.key for p in range(3) for r in cell.runs(p)}) == 9


def test_calibration_cells_of_one_board_have_their_own_keys():
    a = bench_cell(board("x86"), framework="tflite", model="tiny", iterations=5, warmup=1, threads=0, name="docker",
                   arms=(Arm(label="docker-A", mode="docker"), Arm(label="docker-B", mode="docker")))
    assert a.key == "x86/tflite-tiny:docker"
    assert [r.key for r in a.runs(0)] == ["x86/tflite-tiny-docker-A-00", "x86/tflite-tiny-docker-B-00"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_pairs=0), "1 <= min-pairs <= max-pairs"), (dict(min_pairs=6, max_pairs=5), "1 <= min-pairs"),
    (dict(precision=0), "--precision"), (dict(max_time_s=-1), "--max-time")])
def test_a_stopping_rule_that_cannot_work_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        StopRule(**kwargs)


def test_the_dry_run_shows_order_and_stopping_rule():
    cell = bench_cell(board("rpi4"), framework="tflite", model="tiny", arms=mode_arms(("docker", "bare")),
                      iterations=50, warmup=5, threads=0, min_time=5)
    lines = describe([cell], StopRule(min_pairs=5, max_pairs=30, precision=0.01, max_time_s=600))
    assert "at least 5 pairs" in lines[0] and "1.0%" in lines[0] and "30 pairs or 600 s" in lines[0]
    assert lines[1] == "rpi4/tflite-tiny: docker bare | bare docker | ... (50 iterations, at least 5 s a run)"


def test_run_keys_are_unique_and_name_the_run():
    plan = runs()
    assert len({r.key for r in plan}) == len(plan)
    assert plan[2].key == "rpi4/tflite-mobilenet_v2-bare-01"


def test_single_mode():
    assert [(r.mode, r.pair) for r in runs(modes=("bare",), repeat=2)] == [("bare", 0), ("bare", 1)]


@pytest.mark.parametrize("bad, match", [(dict(iterations=0), "--iterations must be >= 1"),
                                        (dict(warmup=-1), "--warmup"), (dict(threads=-1), "--threads")])
def test_bad_counts(bad, match):
    with pytest.raises(ConfigError, match=match):
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
    found = deploy_steps(remote_image_id=remote_id, image_id="sha256:abc", modes=("docker", "native"),
                         bundles={"native": (remote_manifest, MANIFEST)})
    assert [step for _, step in found] == steps
    assert [mode for mode, _ in found] == [{"image": "docker"}.get(s, "native") for s in steps]


def test_deploy_steps_of_each_mode():
    bare = {**MANIFEST, "userland_sha256": "u1"}
    bundles = {"bare": (None, bare), "native": (None, MANIFEST)}
    steps = functools.partial(deploy_steps, remote_image_id=None, image_id="sha256:abc", bundles=bundles)
    assert steps(modes=("docker",)) == [("docker", "image")]
    assert steps(modes=("native",)) == [("native", "bundle")]
    assert steps(modes=("docker", "bare")) == [("docker", "image"), ("bare", "bundle")]
    # a new entrypoint alone: bare mode keeps its userland and gets the entrypoint
    bundles["bare"] = ({**bare, "bench_sha256": "b0"}, bare)
    assert steps(modes=("bare",)) == [("bare", "entrypoint")]
    bundles["bare"] = ({**bare, "userland_sha256": "u0"}, bare)  # another image's userland: all of it again
    assert steps(modes=("bare",)) == [("bare", "bundle")]
