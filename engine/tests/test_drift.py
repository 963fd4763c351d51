"""Drift statistics against scipy and a hand PSI formula, and a shift injected into one unit."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from engine import drift, psi
from engine.drift import FeatureSpec


def _psi_by_hand(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    measured = ref[~np.isnan(ref)]
    cuts = sorted(set(np.quantile(measured, [i / bins for i in range(1, bins)]).tolist()))
    total = 0.0

    def share(values: np.ndarray, test) -> float:
        return max(sum(1 for v in values if test(v)) / len(values), eps)

    tests = [lambda v, hi=cuts[0]: not math.isnan(v) and v <= hi]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        tests.append(lambda v, lo=lo, hi=hi: not math.isnan(v) and lo < v <= hi)
    tests.append(lambda v, lo=cuts[-1]: not math.isnan(v) and v > lo)
    tests.append(lambda v: math.isnan(v))
    for test in tests:
        r, c = share(ref, test), share(cur, test)
        total += (c - r) * math.log(c / r)
    return total


def test_psi_equals_the_hand_formula_with_a_missing_bin():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 3000)
    cur = rng.normal(0.4, 1.2, 2000)
    ref[:150] = np.nan
    cur[:400] = np.nan
    assert psi.psi(ref, cur) == pytest.approx(_psi_by_hand(ref, cur), rel=1e-12)
    # Same population, same share not measured: well under the moderate threshold.
    same = rng.normal(0, 1, 3000)
    same[:150] = np.nan
    assert psi.psi(ref, same) < drift.PSI_MODERATE


def test_psi_of_a_level_never_seen_in_the_reference_is_finite():
    ref = np.array([0.0] * 500 + [1.0] * 500)
    cur = np.array([0.0] * 400 + [1.0] * 400 + [2.0] * 200)
    value = psi.psi(ref, cur, discrete_levels=3)
    r = np.array([0.5, 0.5, 1e-4, 1e-4])
    c = np.array([0.4, 0.4, 0.2, 1e-4])
    assert value == pytest.approx(float(np.sum((c - r) * np.log(c / r))))


def test_ks_wasserstein_and_chi_squared_equal_scipy():
    rng = np.random.default_rng(2)
    ref = rng.gamma(2.0, 2.0, 1500)
    cur = rng.gamma(2.5, 2.0, 1200)
    cur[:100] = np.nan
    statistic, p_value = drift.ks(ref, cur)
    expected = stats.ks_2samp(ref, cur[~np.isnan(cur)])
    assert (statistic, p_value) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert drift.wasserstein(ref, cur) == pytest.approx(stats.wasserstein_distance(ref, cur[100:]))

    ref_cat = rng.choice(3, 1000, p=[0.6, 0.3, 0.1]).astype(float)
    cur_cat = rng.choice(3, 800, p=[0.4, 0.4, 0.2]).astype(float)
    chi2, p, v = drift.chi_squared(ref_cat, cur_cat, 3)
    table = np.array([np.bincount(x.astype(int), minlength=3) for x in (ref_cat, cur_cat)])
    expected_chi2, expected_p, _, _ = stats.chi2_contingency(table, correction=False)
    assert chi2 == pytest.approx(expected_chi2)
    assert p == pytest.approx(expected_p)
    assert v == pytest.approx(math.sqrt(expected_chi2 / (1800 * 1)))


def test_missingness_change_alone_raises_severity():
    rng = np.random.default_rng(3)
    ref = rng.normal(5, 1, 2000)
    cur = rng.normal(5, 1, 2000)
    cur[:500] = np.nan  # 25 % not measured, none in the reference
    row = drift.feature_drift(ref, cur, FeatureSpec("lactate"))
    assert row["missing_change"] == pytest.approx(0.25)
    assert row["severity"] == "major"
    assert "missingness" in row["reasons"]


def _cohort(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit": rng.choice(["MICU", "CCU", "SICU"], n),
            "lactate": rng.lognormal(0.5, 0.4, n),
            "heart_rate": rng.normal(90, 15, n),
            "dnr": rng.binomial(1, 0.1, n).astype(float),
        }
    )


SPECS = [FeatureSpec("lactate"), FeatureSpec("heart_rate"), FeatureSpec("dnr", kind="binary")]


def test_a_shift_injected_into_one_feature_of_one_unit_is_found_there_only():
    rng = np.random.default_rng(4)
    reference = _cohort(rng, 6000)
    current = _cohort(rng, 6000)
    micu = current["unit"] == "MICU"
    current.loc[micu, "lactate"] *= 1.6  # e.g. a new analyser reporting higher values on one unit

    for unit in ("MICU", "CCU", "SICU"):
        table = drift.drift_table(reference[reference.unit == unit], current[current.unit == unit], SPECS)
        by_name = {row["feature"]: row for row in table}
        if unit == "MICU":
            assert table[0]["feature"] == "lactate"
            assert by_name["lactate"]["severity"] == "major"
            assert by_name["lactate"]["psi"] > drift.PSI_MAJOR
        else:
            assert by_name["lactate"]["severity"] == "stable", unit
        for name in ("heart_rate", "dnr"):
            assert by_name[name]["severity"] == "stable", (unit, name)


def test_attribution_drift_ranks_and_correlations():
    names = ["a", "b", "c", "d"]
    result = drift.attribution_drift(names, [0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4], top_k=2)
    by_name = {r["feature"]: r for r in result["features"]}
    assert by_name["a"]["rank_reference"] == 1 and by_name["a"]["rank_current"] == 4
    assert by_name["d"]["rank_change"] == 3
    assert by_name["a"]["change"] == pytest.approx(-0.3)
    assert result["top_k_overlap"] == 0.5
    assert result["spearman"] == pytest.approx(stats.spearmanr([0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4])[0])
    assert result["kendall"] == pytest.approx(stats.kendalltau([0.4, 0.3, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4])[0])


def test_prediction_drift_tier_mix_per_window():
    rng = np.random.default_rng(5)
    ref = rng.beta(2, 6, 4000)
    cur = np.concatenate([rng.beta(2, 6, 1000), rng.beta(4, 4, 1000)])
    windows = np.array(["2026-01-01"] * 1000 + ["2026-01-02"] * 1000)
    result = drift.prediction_drift(ref, cur, tier_high=0.5, tier_medium=0.25, current_windows=windows)
    first, second = result["windows"]
    assert first["psi"] < drift.PSI_MODERATE < drift.PSI_MAJOR < second["psi"]
    assert second["tier_mix"]["high"] == pytest.approx(float((cur[1000:] >= 0.5).mean()))
    assert result["ks"] == pytest.approx(stats.ks_2samp(ref, cur).statistic)


def test_psi_needs_five_expected_rows_per_bin_on_each_side_to_be_judged():
    rng = np.random.default_rng(6)
    reference = rng.normal(0, 1, 1000)
    assert drift.psi_min_rows(drift.bin_counts(reference, drift.quantile_edges(reference))) == 50
    # A thin bin (4% of the reference) needs more rows: 5 / 0.04 = 125.
    assert drift.psi_min_rows([40, 480, 480, 0]) == 125
    # 30 rows of the same population, one decile left empty: PSI reads "major" by its value alone.
    current = np.sort(reference)[100:1000:30]
    row = drift.feature_drift(reference, current, FeatureSpec("potassium"))
    assert row["psi"] > drift.PSI_MAJOR
    assert row["psi_judged"] is False and row["psi_min_rows"] == 50
    assert row["severity"] != "major" and "PSI" not in row["reasons"]
    assert "PSI: too few rows to judge (needs 50 on each side)" in row["notes"]


def _psi_noise_note(row: dict) -> str:
    return (
        f"PSI {row['psi']:.3f} ≥ 0.10: within sampling noise (p = {row['psi_p']:.2g}; "
        f"counts below {drift.P_VALUE / 5:.2g}), not counted"
    )


def test_psi_raises_severity_only_above_sampling_noise():
    rng = np.random.default_rng(7)
    reference = rng.normal(0, 1, 1000)
    # 100 windows of 60 unchanged rows: PSI is often above 0.10 by chance, never a flag.
    specs = [FeatureSpec(f"x{i}") for i in range(5)]
    frame = pd.DataFrame({s.name: rng.normal(0, 1, 1000) for s in specs})
    noisy = flagged = explained = silent = 0
    for _ in range(100):
        window = frame.sample(60, random_state=int(rng.integers(1_000_000)))
        for row in drift.drift_table(frame, window, specs):
            noisy += row["psi"] >= drift.PSI_MODERATE
            flagged += row["severity_level"] > 0
            # A PSI past its threshold that does not count says why (the page shows it by the badge).
            explained += (
                row["psi"] >= drift.PSI_MODERATE
                and row["psi_judged"]
                and "PSI" not in row["reasons"]
                and _psi_noise_note(row) in row["notes"]
            )
            silent += row["psi"] >= drift.PSI_MODERATE and row["psi_judged"] and "PSI" not in row["reasons"]
    assert noisy > 50 and flagged <= 2
    assert explained == silent > 0
    # A real shift on as few rows is still found: the p-value, not the size alone, decides.
    shifted = drift.feature_drift(reference, rng.normal(1.0, 1, 60), FeatureSpec("x"))
    assert shifted["severity"] == "major" and "PSI" in shifted["reasons"]
    assert shifted["psi_p"] < drift.P_VALUE
    # The p-value is seeded: the same counts give the same answer.
    counts = drift.bin_counts(reference, drift.quantile_edges(reference))
    current = drift.bin_counts(rng.normal(0.3, 1, 80), drift.quantile_edges(reference))
    assert drift.psi_p_value(counts, current) == drift.psi_p_value(counts, current)


def test_a_missingness_change_on_a_few_rows_must_be_more_than_chance():
    rng = np.random.default_rng(8)
    reference = rng.normal(5, 1, 1000)
    reference[:500] = np.nan  # half not measured
    current = rng.normal(5, 1, 40)
    current[:13] = np.nan  # 32.5%: a 17.5-point change, but 40 rows
    row = drift.feature_drift(reference, current, FeatureSpec("urine"))
    assert abs(row["missing_change"]) > drift.MISSING_MAJOR
    assert row["missing_p"] >= drift.P_VALUE and "missingness" not in row["reasons"]
