"""Pure planning: which images a sweep needs, which runs in which order, what a board lacks."""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch
from .errors import ConfigError
from .inventory import Board

MODES = ("docker", "bare")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One benchmark run of one model on one board in one mode."""
    board: str
    framework: str
    model: str
    mode: str
    pair: int            # runs of both modes with the same pair index ran back to back
    iterations: int
    warmup: int
    threads: int
    options: tuple[str, ...] = ()  # KEY=VALUE framework options, e.g. xnnpack=off

    @property
    def key(self) -> str:
        return f"{self.board}/{self.framework}-{self.model}-{self.mode}-{self.pair:02d}"


def parse_modes(mode: str) -> tuple[str, ...]:
    """`docker`, `bare` or `both` -> the modes to run."""
    if mode == "both":
        return MODES
    if mode in MODES:
        return (mode,)
    raise ConfigError(f"--mode {mode!r} is not a mode", hint="use docker, bare or both")


def images_needed(boards: list[Board], frameworks: list[str]) -> list[tuple[str, Arch]]:
    """(framework, arch) pairs to build: one image serves every board of an arch."""
    return sorted({(f, b.arch) for b in boards for f in frameworks}, key=lambda p: (p[0], p[1].value))


def bench_runs(board: Board, *, framework: str, model: str, modes: tuple[str, ...], repeat: int,
               iterations: int, warmup: int, threads: int, options: tuple[str, ...] = ()) -> list[RunSpec]:
    """The runs on one board in order: modes alternate within each of `repeat` pairs, so drift
    (heat, background load) hits both modes alike."""
    if repeat < 1 or iterations < 1 or warmup < 0 or threads < 0:
        raise ConfigError("--repeat and --iterations must be >= 1, --warmup and --threads >= 0",
                          hint="e.g. --repeat 3 --iterations 50 --warmup 5")
    bad = [o for o in options if "=" not in o or not o.split("=", 1)[0]]
    if bad:
        raise ConfigError(f"--option {bad[0]!r} is not KEY=VALUE", hint="e.g. --option xnnpack=off")
    return [RunSpec(board=board.name, framework=framework, model=model, mode=mode, pair=pair,
                    iterations=iterations, warmup=warmup, threads=threads, options=tuple(options))
            for pair in range(repeat) for mode in modes]


def deploy_steps(*, remote_image_id: str | None, image_id: str, remote_manifest: dict | None, manifest: dict,
                 modes: tuple[str, ...] = MODES) -> list[str]:
    """What a board lacks for a framework in `modes`: `image` (docker mode), `bundle` (bare mode, or only its
    `entrypoint` when nothing else changed), or nothing."""
    steps = []
    if "docker" in modes and remote_image_id != image_id:
        steps.append("image")
    if "bare" in modes and remote_manifest != manifest:
        installed = {**(remote_manifest or {}), "bench_sha256": manifest.get("bench_sha256")}
        steps.append("entrypoint" if installed == manifest else "bundle")
    return steps
