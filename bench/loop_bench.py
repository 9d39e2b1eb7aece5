"""The closed loop and impact from production, on the simulator (issue 19).

    python bench/loop_bench.py --loop --rounds 4 --customers N   # one JSON line: every round
    python bench/loop_bench.py --impact --draws 10 --customers N # one JSON line: every draw

`--loop` runs `nextbest loop` (training.pipelines.loop.run_loop) in a temporary directory: round 0
explores, then each round trains, promotes and decides; per round the greedy policy's true value as
a share of the oracle's and the impact estimate of the previous round beside its truth.

`--impact` simulates independent production months (a new population per draw): a targeting policy
decides for every decidable customer with the configured global control group, the simulator draws
the 90 days that follow, and `nextbest impact` measures the decisions; the truth is the policy's
expected incremental value from the simulator's potential outcomes. This is evaluation code: it
reads the ground truth; the product never does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

DECIDE_WEEK = 30


def impact_draw(out: Path, customers: int, seed: int) -> dict[str, float]:
    from training.config import load_config
    from training.pipelines.impact import impact
    from training.policy.control import control_mask
    from training.synth.live import production_month

    decisioning = load_config().decisioning
    month = production_month(
        out, customers, seed,
        lambda ids: control_mask(ids, decisioning.control_share, decisioning.control_salt),
        decisioning.control_share, DECIDE_WEEK,
    )  # fmt: skip
    truth = month.truth
    result = impact(out, seed=seed)
    overall = result.tables["overall"].iloc[0]
    estimate, ci = float(overall["incremental_value"]), float(overall["ci"])
    greedy = [
        {"action": row["greedy_action"], "estimate": float(row["incremental_value"]),
         "ci": float(row["ci"]), "truth": month.greedy_truth[row["greedy_action"]],
         "control": int(row["control"])}
        for row in result.tables["greedy"].dropna(subset=["incremental_value"]).to_dict("records")
    ]  # fmt: skip
    return {"estimate": estimate, "ci": ci, "truth": truth, "decisions": len(month.exposures),
            "covered": bool(abs(estimate - truth) <= ci), "greedy": greedy}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--impact", action="store_true")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--customers", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nextbest-loop-") as tmp:
        if args.loop:
            from training.pipelines.loop import run_loop

            result = run_loop(args.rounds, Path(tmp), customers=args.customers)
            rounds = [vars(r) for r in result.rounds]
            print(json.dumps({"rounds": rounds, "last_impact": result.last_impact}))
        if args.impact:
            draws = [impact_draw(Path(tmp) / f"m{s}", args.customers, s) for s in range(args.draws)]
            print(json.dumps({"draws": draws}))


if __name__ == "__main__":
    main()
