"""Drift maths on generated samples: bins, PSI and KS of equal and shifted distributions, and the
profile's JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.drift.compare import compare, ks, mix_shift, psi
from training.drift.profile import (
    Binning,
    Profile,
    ProfileBuilder,
    bin_of,
    fit_binning,
    fit_profile,
)
from training.errors import NextbestError


def sample(seed: int, n: int = 20_000, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n) * scale
    spend[rng.random(n) < 0.3] = 0.0  # many ties at zero, as purchase sums have
    plan = rng.choice(3, n, p=[0.5, 0.3, 0.2]).astype(np.float32)
    plan[rng.random(n) < 0.02] = np.nan
    return {"spend": spend.astype(np.float32), "plan": plan}


def test_quantile_bins_hold_about_equal_shares_and_ties_share_a_bin() -> None:
    values = sample(1)["spend"]
    binning = fit_binning(values, "numeric", 10)
    shares = binning.counts(values) / len(values)
    assert shares[0] == 0  # below the reference minimum
    assert shares[-1] == 0  # nothing missing
    assert 0.29 < shares[1] < 0.31  # the zeros: one bin, not three
    assert binning.size == len(binning.edges) + 2


def test_same_world_is_stable_and_a_doubled_value_is_flagged() -> None:
    reference = fit_profile(sample(1), {"plan": 3}, bins=20)
    again = ProfileBuilder(reference.binnings)
    fresh = sample(2)
    again.add(fresh, len(fresh["spend"]))
    stable = compare(reference, again.profile(), psi_limit=0.2, ks_limit=0.1)
    assert [c.flagged for c in stable] == [False, False]
    assert max(c.psi for c in stable) < 0.02
    shifted = ProfileBuilder(reference.binnings)
    doubled = sample(3, scale=2.0)
    shifted.add(doubled, len(doubled["spend"]))
    drift = {c.name: c for c in compare(reference, shifted.profile(), 0.2, 0.1)}
    assert drift["spend"].flagged and drift["spend"].psi > 0.2 and drift["spend"].ks > 0.1
    assert not drift["plan"].flagged and drift["plan"].ks is None


def test_a_category_going_missing_is_flagged() -> None:
    reference = fit_profile(sample(1), {"plan": 3}, bins=20)
    renamed = sample(2)
    renamed["plan"][renamed["plan"] == 1] = 7  # a category renamed: unseen -> the missing bin
    builder = ProfileBuilder(reference.binnings)
    builder.add(renamed, len(renamed["plan"]))
    drift = {c.name: c for c in compare(reference, builder.profile(), 0.2, 0.1)}
    assert drift["plan"].flagged and not drift["spend"].flagged


def test_psi_and_ks_of_known_shares() -> None:
    p = np.array([0.5, 0.5, 0.0])
    assert psi(p, p) == 0 and ks(p, p) == 0
    q = np.array([0.25, 0.75, 0.0])
    assert psi(p, q) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5))
    assert ks(p, q) == pytest.approx(0.25)


def test_profile_round_trips_through_json_and_rejects_garbage() -> None:
    profile = fit_profile(sample(1), {"plan": 3}, bins=20)
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.binnings == profile.binnings and again.rows == profile.rows
    assert all((again.counts[n] == profile.counts[n]).all() for n in profile.counts)
    broken = profile.to_dict()
    broken["columns"]["spend"]["counts"] = [1, 2]
    with pytest.raises(NextbestError, match="spend: 2 counts"):
        Profile.from_dict(broken)
    with pytest.raises(NextbestError, match="drift profile"):
        Profile.from_dict({"format": 1})


def test_codes_outside_the_categories_count_as_missing() -> None:
    binning = Binning("categorical", categories=2)
    counts = binning.counts(np.array([0, 1, 1, 5, np.nan, -1], dtype=np.float32))
    assert counts.tolist() == [1, 2, 3]


def test_decision_mix_flags_an_action_whose_share_moves() -> None:
    shift = mix_shift({"a": 0.3, "none": 0.7}, {"a": 0.1, "b": 0.15, "none": 0.75}, limit=0.1)
    assert shift.flagged == ["a", "b"]  # "b" is new at 15%; "none" moved 5 points only
    assert shift.change["a"] == pytest.approx(-0.2)


def test_one_value_lands_in_the_bin_the_counts_use() -> None:
    values = sample(4)["spend"][:500]
    numeric = fit_binning(sample(1)["spend"], "numeric", 20)
    for value in [*values[:200], np.nan, -1.0, 1e9]:
        counted = numeric.counts(np.array([value], dtype=np.float32))
        assert bin_of(numeric, float(np.float32(value))) == int(np.argmax(counted))
    categorical = Binning("categorical", categories=3)
    assert [bin_of(categorical, v) for v in (0.0, 2.0, 3.0, None, float("nan"))] == [0, 2, 3, 3, 3]
