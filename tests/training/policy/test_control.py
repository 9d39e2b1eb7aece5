"""The global control group: stable, the configured share, nested as the share grows."""

from __future__ import annotations

import numpy as np

from training.config import load_config
from training.policy.control import control_mask, hash_point, in_control


def test_share_is_respected_and_membership_is_stable() -> None:
    ids = [f"C{i:06d}" for i in range(20_000)]
    mask = control_mask(ids, 0.05, "salt")
    assert abs(mask.mean() - 0.05) < 0.006  # binomial sd ≈ 0.0015
    assert np.array_equal(mask, control_mask(ids, 0.05, "salt"))
    assert [in_control(c, 0.05, "salt") for c in ids[:200]] == list(mask[:200])


def test_growing_the_share_only_adds_members_and_a_new_salt_redraws() -> None:
    ids = [f"C{i}" for i in range(5_000)]
    small, large = control_mask(ids, 0.05, "s"), control_mask(ids, 0.10, "s")
    assert not (small & ~large).any()
    other = control_mask(ids, 0.05, "t")
    assert (small & other).sum() < 0.2 * small.sum()


def test_zero_share_has_no_members_and_points_are_uniform() -> None:
    assert not control_mask(["a", "b"], 0.0, "s").any()
    assert not in_control("a", 0.0, "s")
    points = np.array([hash_point(str(i), "s") for i in range(10_000)])
    assert points.min() >= 0 and points.max() < 1
    assert abs(np.median(points) - 0.5) < 0.02


def test_demo_config_has_decisioning_defaults() -> None:
    config = load_config()
    assert 0 < config.decisioning.control_share < 1
    assert 0 <= config.decisioning.exploration <= 1
