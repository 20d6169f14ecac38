"""What a sweep task asked for, parsed once at the edge into a frozen value: the boards, frameworks and models, the
stopping rule and how its comparisons are judged, what each run measures. The manifest keeps the options it was
parsed from (`saved`), so that `--resume` rebuilds the same request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .analysis import Judgement
from .errors import ConfigError
from .plan import StopRule, parse_counts
from .runners import Measures

COUNTS = {"iterations": int, "warmup": int, "timeout": float, "profile": int, "wait_timeout": float}
SWEPT = {"threads": 0, "batch": 1}  # a comma list sweeps them; each value at least this


@dataclass(frozen=True, kw_only=True)
class Request:
    """A sweep as asked: bench (Docker against bare metal), calibrate (each mode against itself), explain (Docker's
    knobs), compare (frameworks side by side) or agree (one inference, checked against PyTorch)."""
    task: str
    inventory: str
    host: str
    framework: str
    model: str = "mobilenet_v2"
    mode: str = "both"
    iterations: int = 50
    warmup: int = 5
    threads: tuple[int, ...] = (0,)
    batch: tuple[int, ...] = (1,)
    options: tuple[str, ...] = ()
    input_shapes: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    rule: StopRule = field(default_factory=StopRule)
    min_time: float = 0.0
    judgement: Judgement = field(default_factory=Judgement)
    timeout: float = 3600
    parallel: bool = False
    dry_run: bool = False
    base_image: str | None = None
    profile: int = 0
    measures: Measures = field(default_factory=Measures)
    coordinator: str | None = None  # a labgrid coordinator: the boards are reserved through its farm
    wait_timeout: float = 3600  # how long a board is waited for in the farm's queue
    resume: Path | None = None  # the run directory to go on with; None for a new run
    saved: dict = field(default_factory=dict)  # the options as the manifest keeps them


def number(option: str, value, kind=float, task: str = "bench"):
    """A numeric option of `task`, or a ConfigError that names it (invoke passes these as text)."""
    flag = "--" + option.replace("_", "-")
    try:
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{flag} {value!r} is not {'an integer' if kind is int else 'a number'}",
                          hint=f"`invoke --help {task}` shows {flag} and its default") from e


def counts(args: dict) -> dict:
    """The whole-number options (and --timeout) as numbers: invoke hands them over as text, so that a bad one is
    an error naming it, not invoke's traceback."""
    args = {**args, **{k: number(k, args[k], kind) for k, kind in COUNTS.items() if k in args},
            **{k: list(parse_counts(k, ",".join(map(str, args[k])) if isinstance(args[k], list) else args[k],
                                    least=least)) for k, least in SWEPT.items() if k in args}}
    if args.get("timeout", 1) <= 0:  # 0 would mean no limit at all, below it every run would be killed at once
        raise ConfigError(f"--timeout {args['timeout']:g} must be above 0", hint="e.g. --timeout 3600 (seconds)")
    return args


def _rule(args: dict) -> StopRule:
    """The stopping rule; --repeat K runs exactly K pairs (and says nothing below --min-pairs)."""
    pairs = {k: number(k, args[k], int) for k in ("min_pairs", "max_pairs")}
    if args["repeat"] is not None:
        pairs = dict.fromkeys(pairs, number("repeat", args["repeat"], int))
    return StopRule(**pairs, precision=number("precision", args["precision"]),
                    max_time_s=number("max_time", args["max_time"]), cooldown_s=number("cooldown", args["cooldown"]))


def parse(saved: dict, resume: Path | None = None) -> Request:
    """The request of a sweep task's options, every one of them (`invoke bench`'s defaults fill in those a task
    does not have: tasks.DEFAULTS), and `task`."""
    args = counts(saved)
    judgement = Judgement(equivalence=number("equivalence", args["equivalence"]),
                          max_spread=number("max_spread", args["max_spread"]),
                          min_pairs=number("min_pairs", args["min_pairs"], int))
    return Request(task=args["task"], inventory=args["inventory"], host=args["host"], framework=args["framework"],
                   model=args["model"], mode=args["mode"], iterations=args["iterations"], warmup=args["warmup"],
                   threads=tuple(args["threads"]), batch=tuple(args["batch"]), options=tuple(args["option"] or ()),
                   input_shapes=tuple(args["input_shape"] or ()), inputs=tuple(args["input"] or ()),
                   rule=_rule(args), min_time=number("min_time", args["min_time"]), judgement=judgement,
                   timeout=args["timeout"], parallel=bool(args["parallel"]), dry_run=bool(args["dry_run"]),
                   base_image=args["base_image"], profile=args["profile"],
                   measures=Measures(counters=bool(args["counters"]), energy=bool(args["energy"]),
                                     keep_samples=bool(args["keep_samples"])),
                   coordinator=args["coordinator"] or None, wait_timeout=args["wait_timeout"], resume=resume,
                   saved=saved)
