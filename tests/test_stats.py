"""The statistics behind the findings, on data with known answers."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cprune_core.errors import ConfigError
from cprune_core.stats import (correlation_ceiling, holm, minimum_detectable_difference, minimum_detectable_rho,
                               partial_spearman, partial_spearman_interval, partial_spearman_p, monte_carlo_p, paired_differences,
                               random_effects_meta, rank_correlation_p, sequential_rank_p, split_half_reliability,
                               two_way_interval)
from cprune_core.stats.pvalues import needs_more_draws


def planted(n=170, images=548, reliability=0.5, rho=0.6, seed=0):
    """Per-image effects of n units whose means have the given reliability, and scores correlated ``rho`` with the
    units' true effects."""
    rng = np.random.default_rng(seed)
    true = rng.standard_normal(n)
    noise_sd = math.sqrt(images * (1 - reliability) / reliability)  # var(mean noise) = (1 - r) / r
    per_image = true[:, None] + noise_sd * rng.standard_normal((n, images))
    scores = rho * true + math.sqrt(1 - rho * rho) * rng.standard_normal(n)
    return per_image, scores, true


def test_split_half_reliability_recovers_a_planted_reliability():
    for reliability in (0.25, 0.5, 0.8):
        per_image, _, _ = planted(reliability=reliability)
        measured = split_half_reliability(per_image, splits=200, seed=1)
        assert measured.full == pytest.approx(reliability, abs=0.07)
        assert measured.ceiling == pytest.approx(math.sqrt(measured.full))
        assert 0 < measured.half < measured.full


def test_pure_noise_has_no_reliability_and_no_ceiling():
    per_image = np.random.default_rng(0).standard_normal((100, 200))
    measured = split_half_reliability(per_image, splits=100)
    assert abs(measured.full) < 0.15 and measured.ceiling < 0.4
    assert correlation_ceiling(-0.2) == 0.0 and math.isnan(correlation_ceiling(math.nan))


def test_awkward_shapes():
    assert math.isnan(split_half_reliability(np.ones((2, 10))).full)  # fewer than 3 units
    assert math.isnan(split_half_reliability(np.ones((10, 1))).full)  # one image
    assert math.isnan(split_half_reliability(np.ones((10, 10))).full)  # constant: every split undefined
    with pytest.raises(ConfigError):
        split_half_reliability(np.ones(10))


def test_observed_rho_is_attenuated_by_the_ceiling_and_the_two_way_interval_is_wider():
    per_image, scores, _ = planted(reliability=0.5, rho=0.6)
    observed = scipy_stats.spearmanr(scores, per_image.mean(1)).statistic
    assert observed == pytest.approx(0.6 * math.sqrt(0.5), abs=0.1)  # rho x ceiling
    low, high, _ = two_way_interval(scores, per_image, resamples=500, seed=0)
    assert low < observed < high
    # Resampling the units alone (the images fixed) ignores the images' noise: a narrower interval.
    rng = np.random.default_rng(0)
    units = rng.integers(0, len(scores), size=(500, len(scores)))
    effects = per_image.mean(1)
    one_way = [scipy_stats.spearmanr(scores[u], effects[u]).statistic for u in units]
    assert high - low > np.subtract(*np.percentile(one_way, [97.5, 2.5]))


def test_minimum_detectable_rho_matches_the_issue_figures():
    assert minimum_detectable_rho(48, 0.05 / 24) == pytest.approx(0.54, abs=0.005)
    assert minimum_detectable_rho(16, 0.05 / 24) == pytest.approx(0.81, abs=0.005)
    assert minimum_detectable_rho(170, 0.05 / 24) < minimum_detectable_rho(48, 0.05 / 24)
    assert math.isnan(minimum_detectable_rho(3, 0.05))


def test_the_minimum_detectable_rho_is_detected_about_80_percent_of_the_time():
    n, alpha = 60, 0.01
    mde = minimum_detectable_rho(n, alpha)
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(400):
        x = rng.standard_normal(n)
        # Pearson rho r on normals has Spearman rho (6 / pi) asin(r / 2); plant the Pearson r that gives ``mde``.
        r = 2 * math.sin(math.pi * mde / 6)
        y = r * x + math.sqrt(1 - r * r) * rng.standard_normal(n)
        hits += scipy_stats.spearmanr(x, y).pvalue < alpha
    assert 0.72 <= hits / 400 <= 0.88


def test_the_minimum_detectable_difference_of_a_paired_t_test_is_detected_80_percent_of_the_time():
    # G*Power's one-sample t-test, two-sided at 0.05 with 80% power: d = 0.996 for 10 pairs.
    assert minimum_detectable_difference(1.0, 10, 0.05) == pytest.approx(0.996, abs=0.001)
    n, sd, alpha = 5, 2.0, 0.05 / 4  # five seeds, Holm's first step over four comparisons
    mde = minimum_detectable_difference(sd, n, alpha)
    differences = mde + sd * np.random.default_rng(4).standard_normal((4000, n))
    detected = scipy_stats.ttest_1samp(differences, 0.0, axis=1).pvalue < alpha
    assert 0.78 <= detected.mean() <= 0.82
    assert minimum_detectable_difference(sd, 10, alpha) < mde  # more seeds see smaller differences


@pytest.mark.parametrize("sd, n, alpha", [(1.0, 1, 0.05), (math.nan, 5, 0.05), (-1.0, 5, 0.05), (1.0, 5, 0.0),
                                         (1.0, 5, 0.9)])  # the last: a level above the power asked for
def test_no_minimum_detectable_difference_without_a_test(sd, n, alpha):
    assert math.isnan(minimum_detectable_difference(sd, n, alpha))


def test_identical_pairs_detect_any_difference():
    assert minimum_detectable_difference(0.0, 5, 0.05) == 0.0


def test_monte_carlo_p_carries_its_error():
    p = monte_carlo_p(18, 9999)
    assert p.p == pytest.approx(0.0019) and p.low < 0.0019 < p.high
    assert p.straddles(0.05 / 24) and not p.straddles(0.05)  # another seed could flip a Holm verdict at 0.0021
    with pytest.raises(ConfigError):
        monte_carlo_p(5, 4)


def test_rank_correlation_p_refines_where_p_is_near_a_threshold():
    rng = np.random.default_rng(0)
    effects = rng.standard_normal(40)
    strong, weak = effects + 0.3 * rng.standard_normal(40), effects + 2.2 * rng.standard_normal(40)
    noise = rng.standard_normal(40)
    plain = rank_correlation_p(np.stack([strong, weak, noise]), effects, permutations=999, seed=0)
    assert plain[0].p == pytest.approx(1 / 1000)  # the smallest possible
    refined = rank_correlation_p(np.stack([strong, weak, noise]), effects, permutations=999, seed=0,
                                 refine=(0.05 / 20, 0.05), max_permutations=99_999)
    for before, after in zip(plain, refined):
        near = before.low <= 0.05 and before.high >= 0.05 / 20
        assert after.draws == (99_999 if near else 999)
    assert refined[0].draws == 99_999 and refined[0].p < 1e-3  # it was at the floor: near the threshold
    # agrees with scipy's asymptotic test
    assert refined[1].p == pytest.approx(scipy_stats.spearmanr(weak, effects).pvalue, rel=0.2, abs=0.01)
    assert math.isnan(rank_correlation_p(np.ones(10), effects[:10])[0].p)  # a constant score


def test_sequential_rank_p_matches_a_hand_count():
    draws = np.arange(1, 101, dtype=float)  # 1..100
    # A value of 95.5: 5 draws above (96..100), 95 below: the upper side never reaches 10 hits, so it is
    # (1 + 5) / (1 + 100) at the cap; two-sided twice that.
    p = sequential_rank_p(95.5, draws, h=10, max_draws=100)
    assert p.p == pytest.approx(2 * 6 / 101) and p.draws == 100
    # A value in the middle stops early: draws in a shuffled order, the 10th hit on each side.
    shuffled = np.random.default_rng(0).permutation(draws)
    value = 50.5
    stop = next(k for k in range(1, 101) if not needs_more_draws(value, shuffled[:k], 10))
    p = sequential_rank_p(value, shuffled[:stop], h=10, max_draws=100)
    upper_l = int(np.flatnonzero(np.cumsum(shuffled[:stop] >= value) >= 10)[0]) + 1
    lower_l = int(np.flatnonzero(np.cumsum(shuffled[:stop] <= value) >= 10)[0]) + 1
    assert p.p == pytest.approx(min(1, 2 * min(10 / upper_l, 10 / lower_l)))
    assert sequential_rank_p(1000.0, draws, max_draws=100).p == pytest.approx(2 / 101)  # the floor
    with pytest.raises(ConfigError):
        sequential_rank_p(95.5, draws[:50], h=10, max_draws=100)  # stopped too soon


def test_sequential_rank_p_is_uniform_under_the_null():
    rng = np.random.default_rng(5)
    ps, stops = [], []
    for _ in range(2000):
        value, stream = rng.standard_normal(), rng.standard_normal(100)
        stop = next((k for k in range(1, 101) if not needs_more_draws(value, stream[:k], 10)), 100)
        stops.append(stop)
        ps.append(sequential_rank_p(value, stream[:stop], h=10, max_draws=100).p)
    ps = np.array(ps)
    for alpha in (0.02, 0.1, 0.3, 0.5):  # P(p <= alpha) <= alpha, up to the Monte Carlo error of 2,000 trials
        assert np.mean(ps <= alpha) <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / 2000)
    assert np.median(stops) < 40  # most null values stop far before the 100 draws


def test_holm():
    assert np.allclose(holm([0.01, 0.04, 0.03, math.nan])[:3], [0.03, 0.06, 0.06])


def test_random_effects_meta_finds_a_small_consistent_correlation_no_layer_shows():
    rng = np.random.default_rng(0)
    rhos, ns = [], []
    for _ in range(24):
        x = rng.standard_normal(48)
        y = -0.15 * x + rng.standard_normal(48)
        rhos.append(scipy_stats.spearmanr(x, y).statistic)
        ns.append(48)
    meta = random_effects_meta(rhos, ns=ns)
    assert meta.ci_high < 0 and meta.p < 0.05 and meta.k == 24
    assert meta.mde < minimum_detectable_rho(48, 0.05 / 24)
    heterogeneous = random_effects_meta([-0.6, 0.6, -0.5, 0.5], ns=[200] * 4)
    assert heterogeneous.tau2 > 0 and heterogeneous.i2 > 0.8 and heterogeneous.ci_low < 0 < heterogeneous.ci_high
    assert math.isnan(random_effects_meta([0.1], ns=[50]).rho)


def test_paired_differences():
    result = paired_differences([5.0] * 20 + [-1.0] * 4)
    assert result.above == 20 and result.below == 4 and result.p < 0.001 and result.ci_low > 0
    assert math.isnan(paired_differences([0.0, 0.0, 0.0]).p)
    assert math.isnan(paired_differences([1.0]).p)


def test_partial_spearman_is_the_textbook_partial_correlation_of_the_ranks():
    rng = np.random.default_rng(5)
    z = rng.standard_normal(50)
    x, y = z + rng.standard_normal(50), 0.5 * z + rng.standard_normal(50)
    r = {pair: scipy_stats.spearmanr(*pair_values).statistic
         for pair, pair_values in {"xy": (x, y), "xz": (x, z), "yz": (y, z)}.items()}
    textbook = (r["xy"] - r["xz"] * r["yz"]) / math.sqrt((1 - r["xz"] ** 2) * (1 - r["yz"] ** 2))
    assert partial_spearman(x, y, z) == pytest.approx(textbook, abs=1e-12)


def test_a_correlation_that_runs_through_the_covariate_vanishes_and_one_beside_it_stays():
    rng = np.random.default_rng(6)
    z = rng.standard_normal(80)
    through = (z + 0.3 * rng.standard_normal(80), z + 0.3 * rng.standard_normal(80))
    assert scipy_stats.spearmanr(*through).statistic > 0.8
    assert abs(partial_spearman(*through, z)) < 0.25 and partial_spearman_p(*through, z, permutations=999).p > 0.01
    shared = rng.standard_normal(80)
    beside = (shared + 0.5 * rng.standard_normal(80), shared + 0.5 * rng.standard_normal(80))
    rho = partial_spearman(*beside, z)
    low, high = partial_spearman_interval(*beside, z, resamples=2000)
    assert rho > 0.6 and low < rho < high and low > 0.4
    assert partial_spearman_p(*beside, z, permutations=999).p == pytest.approx(1 / 1000)


@pytest.mark.slow
def test_partial_spearman_p_values_hold_their_size_under_the_null_in_a_small_sample():
    # At 10 units, 2,000 true nulls (a standard error of 0.5 points): Freedman and Lane's test rejects 6.0% at 0.05;
    # permuting the residuals alone (Kennedy's test) rejected 7.8% of the same nulls.
    rng = np.random.default_rng(7)
    p = []
    for _ in range(2000):
        z = rng.standard_normal(10)
        p.append(partial_spearman_p(z + rng.standard_normal(10), z + rng.standard_normal(10), z,
                                    permutations=499, seed=int(rng.integers(1 << 30))).p)
    assert 0.04 <= np.mean(np.array(p) < 0.05) <= 0.07


def test_a_partial_p_near_a_threshold_is_drawn_again_with_more_permutations():
    rng = np.random.default_rng(8)
    z = rng.standard_normal(30)
    x, y = rng.standard_normal(30), rng.standard_normal(30)
    first = partial_spearman_p(x, y, z, permutations=99)
    refined = partial_spearman_p(x, y, z, permutations=99, refine=(0.0, 1.0), max_permutations=20_000)
    assert first.draws == 99 and refined.draws == 20_000


@pytest.mark.parametrize("x, y, z", [([1, 2, 3], [1, 2, 3], [3, 1, 2]),  # too few units
                                     ([1, 1, 1, 1], [1, 2, 3, 4], [4, 1, 3, 2]),  # a constant side
                                     ([1, 2, 3, 4], [2, 1, 4, 3], [10, 20, 30, 40])])  # x is z's ranks
def test_no_partial_spearman_where_nothing_is_left_to_correlate(x, y, z):
    assert math.isnan(partial_spearman(x, y, z)) and math.isnan(partial_spearman_p(x, y, z).p)
    assert all(math.isnan(bound) for bound in partial_spearman_interval(x, y, z, resamples=50))


def test_partial_spearman_refuses_unequal_lengths():
    with pytest.raises(ConfigError, match="one length"):
        partial_spearman([1, 2, 3, 4], [1, 2, 3], [1, 2, 3, 4])
