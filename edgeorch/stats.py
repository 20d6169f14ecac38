"""Pure math for Docker-vs-bare comparisons: the pair is the unit; intervals, verdicts, stopping, simulation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MIN_PAIRS = 5          # below this: no verdict, "too few pairs"
EQUIVALENCE = 0.01     # +-1% band: criterion and pyperf treat <1% as noise
PRECISION = 0.01       # target CI half-width (relative), the stopping rule's default
MAX_PAIRS = 40         # cap per cell: 80% power at +3% with 3% run offsets; ~13 min of 10 s runs on a Pi
CONFIDENCE = 0.95


@dataclass(frozen=True, kw_only=True)
class Interval:
    """A/B ratio of medians with its confidence interval, from the log ratios of n pairs."""
    ratio: float       # exp(mean log ratio)
    low: float         # ratio scale
    high: float
    n_pairs: int
    sd: float          # sd of the pairs' log ratios: the run-to-run noise of the comparison (inf below 2 pairs)
    half_width: float  # relative: sqrt(high/low) - 1 == high/ratio - 1, the interval being symmetric in log


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What a cell's pairs say about A against B, in words a user reads."""
    kind: str                 # "slower" | "faster" | "equivalent" | "inconclusive" | "too few pairs"
    text: str
    pairs_needed: int | None  # inconclusive only: total pairs that would settle it at the observed sd


def pair_log_ratio(a: np.ndarray | float, b: np.ndarray | float) -> float:
    """log(median(a) / median(b)) of one pair's two runs: their latencies, or their medians."""
    return float(np.log(np.median(a)) - np.log(np.median(b)))


def _t_quantile(confidence: float, df: float) -> float:
    """Student's t quantile of a two-sided `confidence` interval."""
    from scipy.special import stdtrit  # scipy.stats would cost every judging task a second's import
    return float(stdtrit(df, 0.5 + confidence / 2))


@lru_cache(maxsize=1024)
def _t(confidence: float, df: int) -> float:
    return _t_quantile(confidence, df) if df >= 1 else math.inf


def _log_half_widths(d: np.ndarray, confidence: float, first_stage: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and log-scale half-width after every prefix of the last axis of `d` (the pairs in order)."""
    n = np.arange(1, d.shape[-1] + 1)
    centred = d - d[..., :1]  # shift first: cumulative sums of squares stay exact enough
    mean = np.cumsum(centred, axis=-1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(np.cumsum(centred**2, axis=-1) - n * mean**2, 0.0) / (n - 1)
        sd = np.sqrt(var)
        t = np.array([_t(confidence, k - 1) for k in n])
        half = np.where(n >= 2, t * sd / np.sqrt(n), np.inf)
        if 2 <= first_stage <= d.shape[-1]:
            # Stein: the stopping rule looks at the sd, so an sd from the first stage only (fixed before
            # any stopping decision) keeps the promise that a small sd seen by chance would break.
            stein = _t(confidence, first_stage - 1) * sd[..., first_stage - 1 : first_stage] / np.sqrt(n)
            half = np.where(n >= first_stage, np.maximum(half, stein), half)
    return mean + d[..., :1], half


def interval(log_ratios, *, confidence: float = CONFIDENCE, first_stage: int = MIN_PAIRS) -> Interval:
    """The wider of the t-interval and Stein's two-stage interval on the mean of the pairs' log ratios."""
    d = np.asarray(log_ratios, dtype=float)
    if d.size == 0:
        raise ValueError("an interval needs at least one pair")
    mean, half = (x[-1] for x in _log_half_widths(d, confidence, first_stage))
    sd = float(np.std(d, ddof=1)) if d.size >= 2 else math.inf
    return Interval(ratio=math.exp(mean), low=math.exp(mean - half), high=math.exp(mean + half), n_pairs=d.size,
                    sd=sd, half_width=math.expm1(half))


def _pct(x: float, sign: str = "") -> str:
    return f"{100 * x:{sign}.1f}%"


def verdict(log_ratios, *, equivalence: float = EQUIVALENCE, min_pairs: int = MIN_PAIRS,
            confidence: float = CONFIDENCE, a: str = "docker", b: str = "bare") -> Verdict:
    """Slower, faster, equivalent within the band, inconclusive (with the pairs that would settle it), or too few."""
    n, fewest = len(log_ratios), max(min_pairs, 2)  # one pair has no spread, so no interval
    if n < fewest:
        return Verdict(kind="too few pairs", text=f"too few pairs ({n} < {fewest}): no verdict", pairs_needed=None)
    return _judge(interval(log_ratios, confidence=confidence, first_stage=min_pairs), n, equivalence=equivalence,
                  confidence=confidence, a=a, b=b, unit="pairs")


def _judge(iv: Interval, n: int, *, equivalence: float, confidence: float, a: str, b: str, unit: str,
           floor: float = 0.0) -> Verdict:
    """The verdict of an interval from n units; `floor`: the part of its log half-width that more units leave."""
    ci = f"{confidence:.0%} CI"
    if 1 - equivalence < iv.low and iv.high < 1 + equivalence:
        # Before slower/faster: a statistically real 0.3% is still noise to a user.
        return Verdict(kind="equivalent", pairs_needed=None, text=f"{a} equivalent to {b} within "
                       f"±{100 * equivalence:g}% [{ci} {_pct(iv.low - 1, '+')} to {_pct(iv.high - 1, '+')}]")
    if iv.low > 1:
        return Verdict(kind="slower", pairs_needed=None, text=f"{a} slower than {b} by {_pct(iv.ratio - 1)} "
                       f"[{ci} {_pct(iv.low - 1)} to {_pct(iv.high - 1)}]")
    if iv.high < 1:
        return Verdict(kind="faster", pairs_needed=None, text=f"{a} faster than {b} by {_pct(1 - iv.ratio)} "
                       f"[{ci} {_pct(1 - iv.high)} to {_pct(1 - iv.low)}]")
    # Settled when the half-width shrinks to fit the band or to exclude zero, whichever needs fewer pairs;
    # at the observed sd the half-width falls as 1/sqrt(n) (the t quantile's fall makes this a slight overestimate).
    m, h = math.log(iv.ratio), math.log1p(iv.half_width)
    target = max(min(math.log1p(equivalence) - m, m - math.log1p(-equivalence)), abs(m))
    text = f"{a} vs {b} inconclusive [{ci} {_pct(iv.low - 1, '+')} to {_pct(iv.high - 1, '+')}]"
    if target <= 0:
        return Verdict(kind="inconclusive", text=text, pairs_needed=None)
    if target <= floor:
        return Verdict(kind="inconclusive", pairs_needed=None, text=f"{text}: more {unit} cannot settle it (a "
                       f"session's own shift alone is ±{_pct(math.expm1(floor))})")
    needed = max(n + 1, math.ceil(n * (h**2 - floor**2) / (target**2 - floor**2)))
    return Verdict(kind="inconclusive", pairs_needed=needed,
                   text=f"{text}: about {needed - n} more {unit} would settle it")


MIN_RUNS = 3  # a side of a comparison across runs: fewer medians than this give no verdict
# How far a whole run (one `invoke bench`) may shift, as the sd of its log mean, where the history holds too few
# runs of the cell to tell: another boot, another room temperature, another memory layout move every measurement of
# a run alike, and no spread inside it shows that. 1% is an assumption for a quiet board; the x86 sim board, a
# shared two-core VM, measured 4-8% over six back-to-back benches (benchmarks/verdicts.py --sessions 6).
SESSION_SD = 0.01


def session_sd(sessions) -> tuple[float, int] | None:
    """(sd, degrees of freedom) of a session's shift from three or more sessions of one cell, each its runs' medians:
    the spread of the session means beyond what their runs' spread explains (method of moments); None below three."""
    logs = [np.log(np.asarray(s, dtype=float)) for s in sessions if len(s) >= 2]
    if len(logs) < 3:
        return None
    means = np.array([x.mean() for x in logs])
    within = np.mean([np.var(x, ddof=1) / x.size for x in logs])
    return math.sqrt(max(0.0, float(np.var(means, ddof=1)) - within)), len(logs) - 1


def change(before, after, *, session: tuple[float, float] = (SESSION_SD, math.inf), equivalence: float = EQUIVALENCE,
           confidence: float = CONFIDENCE, min_runs: int = MIN_RUNS) -> tuple[Interval | None, Verdict]:
    """`after` against `before`, each the run medians of one session (`invoke bench`): the difference of their mean
    logs, whose variance is each side's runs' (Welch) plus two sessions' shifts (`session`: sd, and its degrees of
    freedom, inf where assumed), judged like a pair's: slower, faster, equivalent, inconclusive (with the runs a side
    that would settle it), or too few runs."""
    a, b = (np.log(np.asarray(x, dtype=float)) for x in (after, before))
    n = min(a.size, b.size)
    if n < min_runs:
        return None, Verdict(kind="too few runs", pairs_needed=None,
                             text=f"too few runs ({n} < {min_runs} a side): no verdict")
    va, vb, vs = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size, 2 * session[0] ** 2
    se = math.sqrt(va + vb + vs)
    # Welch-Satterthwaite over the three parts; with no spread at all the interval is the point itself
    df = se**4 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1) + vs**2 / session[1]) if se else math.inf
    half = _t_quantile(confidence, df) * se
    mean = float(a.mean() - b.mean())
    iv = Interval(ratio=math.exp(mean), low=math.exp(mean - half), high=math.exp(mean + half), n_pairs=n,
                  sd=float(math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)), half_width=math.expm1(half))
    return iv, _judge(iv, n, equivalence=equivalence, confidence=confidence, a="after", b="before",
                      unit="runs a side", floor=half * math.sqrt(vs) / se if se else 0.0)


def _stop(n: int, half_width: float, *, precision, min_pairs, max_pairs, elapsed_s, max_time_s) -> str | None:
    # only after whole ABBA blocks: with an odd number of pairs one arm ran first once more, and an order effect
    # (caches, heat from the run before) would not cancel
    if n >= min_pairs and n % 2 == 0 and half_width <= precision:
        return "precision"
    if n >= max_pairs:
        return "max-pairs"
    if max_time_s is not None and elapsed_s >= max_time_s:
        return "max-time"
    return None


def stop_reason(log_ratios, *, precision: float = PRECISION, min_pairs: int = MIN_PAIRS, max_pairs: int = MAX_PAIRS,
                elapsed_s: float = 0.0, max_time_s: float | None = None) -> str | None:
    """None to add another pair, else why the cell stops: "precision", "max-pairs" or "max-time"."""
    n = len(log_ratios)
    half_width = interval(log_ratios, first_stage=min_pairs).half_width if n else math.inf
    return _stop(n, half_width, precision=precision, min_pairs=min_pairs, max_pairs=max_pairs,
                 elapsed_s=elapsed_s, max_time_s=max_time_s)


def spread(medians) -> float:
    """Run-to-run spread of one mode's run medians: the sd of their logs (about the relative sd); nan below 2."""
    logs = np.log(np.asarray(medians, dtype=float))
    return float(np.std(logs, ddof=1)) if logs.size >= 2 else math.nan


def min_samples(q: float, confidence: float = 0.99) -> int:
    """Samples needed before the q-quantile is reported: the sample max then exceeds it with `confidence`."""
    n = max(1, math.ceil(math.log1p(-confidence) / math.log(q)))
    while 1 - q ** (n - 1) >= confidence and n > 1:  # the logs may round up across an integer
        n -= 1
    while 1 - q**n < confidence:
        n += 1
    return n


def _simulate_runs(rng, shape, *, run_offset, rho, iterations, noise, base_ms) -> np.ndarray:
    """Latencies (ms) of runs of the given shape: a lognormal offset per run, AR(1) iterations within it."""
    x = np.empty((*shape, iterations))
    x[..., 0] = rng.normal(0.0, noise, shape)
    innovation = noise * math.sqrt(1 - rho**2)  # keeps the marginal sd at `noise`
    for i in range(1, iterations):
        x[..., i] = rho * x[..., i - 1] + rng.normal(0.0, innovation, shape)
    return base_ms * np.exp(x + rng.normal(0.0, run_offset, shape)[..., None])


def simulate_pair(rng, *, true_ratio: float = 1.0, run_offset: float = 0.02, rho: float = 0.5, iterations: int = 50,
                  noise: float = 0.02, base_ms: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic pair (A, B) of runs' latencies in ms, A scaled by true_ratio."""
    a, b = _simulate_runs(rng, (2,), run_offset=run_offset, rho=rho, iterations=iterations, noise=noise,
                          base_ms=base_ms)
    return a * true_ratio, b


def simulate_cells(rng, n_cells: int, *, true_ratio: float, run_offset: float, rho: float, iterations: int = 50,
                   noise: float = 0.02, precision: float = PRECISION, min_pairs: int = MIN_PAIRS,
                   max_pairs: int = MAX_PAIRS, equivalence: float = EQUIVALENCE) -> list[tuple[Verdict, int]]:
    """(verdict, pairs used) of synthetic cells run pair by pair under the stopping rule."""
    runs = _simulate_runs(rng, (n_cells, max_pairs, 2), run_offset=run_offset, rho=rho, iterations=iterations,
                          noise=noise, base_ms=100.0)
    medians = np.median(runs, axis=-1)
    d = np.log(medians[..., 0] * true_ratio) - np.log(medians[..., 1])
    # Every prefix at once is what stop_reason would see pair by pair; the cell ends at its first stop.
    _, half = _log_half_widths(d, CONFIDENCE, min_pairs)
    out = []
    for row, hw in zip(d, np.expm1(half)):
        n = next(k for k in range(1, max_pairs + 1) if _stop(
            k, hw[k - 1], precision=precision, min_pairs=min_pairs, max_pairs=max_pairs, elapsed_s=0.0,
            max_time_s=None))
        out.append((verdict(row[:n], equivalence=equivalence, min_pairs=min_pairs), n))
    return out


# How far from PyTorch's output a float framework may be, as a share of the output's range. Reduced precision
# is a model of its own (an int8 TFLite file, an fp16 engine), judged by its own rule.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}


# Full-integer models of the zoo's random-weight networks keep the logits' shape but not top-1: measured
# correlations with PyTorch were 0.94 (squeezenet1_1), 0.97 (resnet18), 0.68 (mobilenet_v2), with top-1
# different on all three. Unrelated outputs correlate at about 0, so a broken conversion still fails.
INT8_MIN_CORRELATION = 0.5


def agreement(reference: np.ndarray, output: np.ndarray, *, precision: str = "fp32") -> dict:
    """How far a framework's output is from the reference: max |diff|, relative to the reference's range,
    correlation, and whether top-1 agrees. A float output agrees when top-1 is equal and the difference is
    within tolerance; an int8 one when it correlates with the reference."""
    if output.shape != reference.shape:
        return {"max_abs_diff": None, "relative": None, "correlation": None, "top1_ref": int(reference.argmax()),
                "top1": None, "agree": False,
                "why": f"output shape {list(output.shape)} != reference {list(reference.shape)}"}
    output = output.astype(np.float64)
    diff = float(np.abs(output - reference).max())
    relative = diff / float(np.ptp(reference) or 1.0)
    correlation = float(np.corrcoef(output.ravel(), reference.ravel())[0, 1]) if np.ptp(output) else 0.0
    # one top-1 per image of the batch; the first is reported
    top1_ref, top1 = (a.reshape(len(a), -1).argmax(1) for a in (reference, output))
    same_top1 = bool((top1 == top1_ref).all())
    if precision == "int8":
        ok = correlation >= INT8_MIN_CORRELATION
        why = "" if ok else f"correlation {correlation:.2f} below {INT8_MIN_CORRELATION}"
    else:
        ok = same_top1 and relative <= TOLERANCE[precision]
        why = "" if ok else ("top-1 differs" if not same_top1 else
                             f"difference above {TOLERANCE[precision]:g} of the range")
    return {"max_abs_diff": diff, "relative": relative, "correlation": correlation, "top1_ref": int(top1_ref[0]),
            "top1": int(top1[0]), "agree": ok, "why": why}
