"""Does the simulator's truth measure what the labels measure? Labels against truth, arm by arm.

Every figure of issue 4 that says "true" compares a policy with the simulator's ground truth, so
the truth must mean what the outcome labels mean. For the exposures the truth covers, this prints:
- per outcome, label minus the truth of the arm received (should be 0 within its interval);
- on the randomized waves, each action's difference in means of the labels beside the mean true
  effect on the same rows (should agree within the interval; the arms share one control group,
  so their deviations move together).
It found that the satisfaction truth read the NPS answer's unrounded centre (label - truth
-0.063 +- 0.030 on a 200k world), fixed in `training.synth.dynamics.expected_nps_answer`.

    .venv/bin/python bench/truth_labels.py --data DIR [--truth DIR] [--config FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

Z95 = 1.96


def labelled_exposures(data: Path, config_path: Path | None) -> tuple[pd.DataFrame, list[str]]:
    """Every exposure with its outcome labels (censored: NaN), and the outcome names."""
    from training.config import load_config
    from training.data.contract import open_dataset
    from training.data.exposures import build_exposure_set
    from training.features.definition import FeatureBuilder

    config = load_config(config_path)
    with open_dataset(data).connect() as con:
        exposures = build_exposure_set(con, FeatureBuilder(config.features).fit(con), config)
    frame = exposures.frame.assign(as_of=lambda f: pd.to_datetime(f["as_of"]))
    return frame, list(config.outcomes)


def compare(
    rows: pd.DataFrame, outcome: str, prefix: str, arms: list[str], randomized: bool
) -> None:
    """Print the level check and, on randomized rows, the effect check of one outcome."""
    labelled = rows[rows[outcome].notna()]
    own = labelled[[f"{prefix}_{a}" for a in arms]].to_numpy()
    received = labelled["action_id"].map(arms.index).to_numpy()
    diff = labelled[outcome].to_numpy() - own[np.arange(len(labelled)), received]
    half = Z95 * diff.std() / np.sqrt(len(diff))
    print(f"  {outcome:14s} label - truth {diff.mean():+9.4f} ± {half:.4f}  ({len(diff):,} rows)")
    if not randomized:
        return
    control = labelled[labelled["action_id"] == arms[0]][outcome]
    for action in arms[1:]:
        treated = labelled[labelled["action_id"] == action][outcome]
        observed = treated.mean() - control.mean()
        se = np.sqrt(treated.var() / len(treated) + control.var() / len(control))
        true = (labelled[f"{prefix}_{action}"] - labelled[f"{prefix}_{arms[0]}"]).mean()
        print(
            f"    {action:26s} difference in means {observed:+9.4f} ± {Z95 * se:.4f}   true {true:+9.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--truth", type=Path, default=None, help="default: <data>_truth")
    parser.add_argument("--config", type=Path, default=None, help="default: the demo config")
    args = parser.parse_args()
    from training.synth.actions import ARMS
    from training.synth.generate import default_truth_dir

    truth_dir = args.truth or default_truth_dir(args.data)
    truth = pd.read_parquet(truth_dir / "exposures_truth.parquet").rename(columns={"ts": "as_of"})
    truth["as_of"] = pd.to_datetime(truth["as_of"])
    frame, outcomes = labelled_exposures(args.data, args.config)
    keys = ["customer_id", "as_of", "action_id"]
    rows = frame[[*keys, *outcomes]].merge(truth, on=keys, how="inner")
    print(f"{len(rows):,} of {len(frame):,} exposures have truth")
    prefixes = {o: o for o in outcomes if f"{o}_control" in truth}
    for kind in ("randomized", "targeted"):
        part = rows[rows["campaign"].str.contains(kind)]
        print(f"{kind} waves: {len(part):,} exposures")
        for outcome, prefix in prefixes.items():
            compare(part, outcome, prefix, list(ARMS), randomized=kind == "randomized")


if __name__ == "__main__":
    main()
