"""Paired Docker-vs-bare statistics on synthetic data with a known truth."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from edgeorch import stats

SETTINGS = [(offset, rho) for offset in (0.01, 0.02, 0.03) for rho in (0.0, 0.5, 0.9)]
CELLS = 1000


def rate(cells, *kinds):
    return sum(v.kind in kinds for v, _ in cells) / len(cells)


@pytest.mark.parametrize(("run_offset", "rho"), SETTINGS)
def test_aa_false_positive_rate_stays_at_the_promise(run_offset, rho):
    cells = stats.simulate_cells(np.random.default_rng(11), CELLS, true_ratio=1.0, run_offset=run_offset, rho=rho)
    assert rate(cells, "slower", "faster") <= 0.06


@pytest.mark.parametrize(("run_offset", "rho"), SETTINGS)
def test_a_3_percent_slowdown_is_found(run_offset, rho):
    cells = stats.simulate_cells(np.random.default_rng(12), CELLS, true_ratio=1.03, run_offset=run_offset, rho=rho)
    assert rate(cells, "slower") >= 0.80
    assert rate(cells, "faster") <= 0.01


def pooled_iterations_is_significant(pairs):
    """The old mistake: every iteration an independent sample, run-to-run variation never enters."""
    a = np.log(np.concatenate([p[0] for p in pairs]))
    b = np.log(np.concatenate([p[1] for p in pairs]))
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) > 1.96 * se


def test_more_pairs_do_not_raise_the_false_positive_rate():
    rng = np.random.default_rng(13)
    for max_pairs in (10, 30):
        cells = stats.simulate_cells(rng, CELLS, true_ratio=1.0, run_offset=0.02, rho=0.5, max_pairs=max_pairs)
        assert rate(cells, "slower", "faster") <= 0.06
    # The same synthetic truth fools the old method at any number of pairs: this setting tells them apart.
    pairs = [[stats.simulate_pair(rng, run_offset=0.02, rho=0.5) for _ in range(30)] for _ in range(200)]
    assert np.mean([pooled_iterations_is_significant(cell[:10]) for cell in pairs]) > 0.5
    assert np.mean([pooled_iterations_is_significant(cell) for cell in pairs]) > 0.5


def test_pair_log_ratio_compares_medians():
    assert stats.pair_log_ratio(np.array([1.0, 110.0, 120.0, 900.0]), np.array([100.0, 100.0, 100.0])) == \
        pytest.approx(math.log(1.15))


def test_interval_is_the_wider_of_t_and_stein():
    d = np.array([0.001, 0.002, 0.0015, 0.0012, 0.0018, 0.03, -0.02, 0.025, -0.01, 0.02])
    iv = stats.interval(d)
    sem = scipy_stats.sem(d)
    t_half = scipy_stats.t.ppf(0.975, d.size - 1) * sem
    stein_half = scipy_stats.t.ppf(0.975, 4) * np.std(d[:5], ddof=1) / math.sqrt(d.size)
    assert t_half > stein_half  # the first five pairs agree by chance: Stein alone would be too narrow
    assert (math.log(iv.low), math.log(iv.high)) == pytest.approx((d.mean() - t_half, d.mean() + t_half))
    assert iv.ratio == pytest.approx(math.exp(d.mean()))
    assert iv.half_width == pytest.approx(math.sqrt(iv.high / iv.low) - 1)
    assert iv.sd == pytest.approx(np.std(d, ddof=1))
    assert iv.n_pairs == 10

    calm_after = np.concatenate([d[5:], np.full(20, 0.005)])
    iv = stats.interval(calm_after)
    stein_half = scipy_stats.t.ppf(0.975, 4) * np.std(calm_after[:5], ddof=1) / math.sqrt(calm_after.size)
    assert math.log(iv.high / iv.ratio) == pytest.approx(stein_half)


def test_interval_of_one_pair_is_unbounded():
    iv = stats.interval([0.02])
    assert (iv.ratio, iv.low, iv.high, iv.half_width) == (pytest.approx(math.exp(0.02)), 0.0, math.inf, math.inf)
    with pytest.raises(ValueError):
        stats.interval([])


def test_verdict_too_few_pairs():
    v = stats.verdict([0.05, 0.05, 0.06])
    assert (v.kind, v.text, v.pairs_needed) == ("too few pairs", "too few pairs (3 < 5): no verdict", None)


def test_one_pair_is_too_few_even_when_asked_for_one():
    # `bench --repeat 1` (or --min-pairs 1): one pair has no spread, so no interval and no verdict, not a crash
    for d in ([0.05], [0.0]):
        v = stats.verdict(d, min_pairs=1)
        assert (v.kind, v.text, v.pairs_needed) == ("too few pairs", "too few pairs (1 < 2): no verdict", None)


def test_verdict_equivalent_even_when_significant():
    d = [0.003, 0.0032, 0.0028, 0.0031, 0.0029, 0.003]
    iv = stats.interval(d)
    assert iv.low > 1  # a real 0.3%, still noise to a user
    v = stats.verdict(d)
    assert v.kind == "equivalent"
    assert v.text == f"docker equivalent to bare within ±1% [95% CI +{100 * (iv.low - 1):.1f}% to " \
                     f"+{100 * (iv.high - 1):.1f}%]"


def test_verdict_slower_with_the_truth_inside():
    d = np.log(1.04) + np.array([0.01, -0.01, 0.005, -0.005, 0.0, 0.008, -0.008])
    iv = stats.interval(d)
    v = stats.verdict(d)
    assert v.kind == "slower"
    assert iv.low < 1.04 < iv.high
    assert v.text == f"docker slower than bare by 4.0% [95% CI {100 * (iv.low - 1):.1f}% to {100 * (iv.high - 1):.1f}%]"


def test_verdict_faster_names_the_labels():
    d = np.log(0.95) + np.array([0.01, -0.01, 0.005, -0.005, 0.0, 0.008, -0.008])
    iv = stats.interval(d)
    v = stats.verdict(d, a="docker A", b="docker B")
    assert v.kind == "faster"
    assert v.text == f"docker A faster than docker B by 5.0% [95% CI {100 * (1 - iv.high):.1f}% to " \
                     f"{100 * (1 - iv.low):.1f}%]"


def test_verdict_inconclusive_says_how_many_pairs_would_settle_it():
    d = [0.02, -0.01, 0.015, -0.005, 0.03, 0.0]
    v = stats.verdict(d)
    assert v.kind == "inconclusive"
    assert v.pairs_needed > len(d)
    assert f"about {v.pairs_needed - len(d)} more pairs would settle it" in v.text
    iv = stats.interval(d)
    assert f"[95% CI {100 * (iv.low - 1):+.1f}% to {100 * (iv.high - 1):+.1f}%]" in v.text
    # The promised pairs, going on at the same mean and sd, do settle it.
    extra = v.pairs_needed - len(d) + 1
    more = np.concatenate([d, np.mean(d) + np.std(d, ddof=1) * np.resize([1.0, -1.0], extra)])
    assert stats.verdict(more).kind != "inconclusive"
    assert stats.verdict(more[:len(d) + 1]).kind == "inconclusive"


def test_stop_reason():
    tight = [0.02, 0.021, 0.019, 0.02, 0.0205, 0.0198]
    wide = [0.1, -0.1, 0.05, -0.05, 0.0] * 2
    assert stats.stop_reason([]) is None
    assert stats.stop_reason(tight[:4]) is None  # tight, but below min_pairs
    assert stats.stop_reason(tight[:5]) is None  # tight, but an ABBA block is half done: one more pair
    assert stats.stop_reason(tight) == "precision"
    assert stats.stop_reason(tight, max_pairs=6) == "precision"  # the better reason wins
    assert stats.stop_reason(tight[:5], max_pairs=5) == "max-pairs"
    assert stats.stop_reason(wide) is None
    assert stats.stop_reason(wide, max_pairs=10) == "max-pairs"
    assert stats.stop_reason(wide, elapsed_s=59.0, max_time_s=60.0) is None
    assert stats.stop_reason(wide, elapsed_s=60.0, max_time_s=60.0) == "max-time"


def test_spread_is_the_relative_sd_of_run_medians():
    assert stats.spread([100.0, 102.0, 98.0, 101.0, 99.0]) == pytest.approx(0.0158, abs=5e-4)
    assert math.isnan(stats.spread([100.0]))


def test_min_samples():
    assert stats.min_samples(0.99) == 459
    assert stats.min_samples(0.9) == 44
    assert stats.min_samples(0.5) == 7


def test_simulate_pair_has_the_asked_truth():
    rng = np.random.default_rng(14)
    pairs = [stats.simulate_pair(rng, true_ratio=1.05, run_offset=0.0, rho=0.9, noise=0.02) for _ in range(400)]
    assert np.mean([stats.pair_log_ratio(a, b) for a, b in pairs]) == pytest.approx(math.log(1.05), abs=0.002)
    a, b = pairs[0]
    assert a.shape == b.shape == (50,)
    lag1 = np.mean([np.corrcoef(np.log(b[:-1]), np.log(b[1:]))[0, 1] for _, b in pairs])
    assert lag1 == pytest.approx(0.9, abs=0.1)
