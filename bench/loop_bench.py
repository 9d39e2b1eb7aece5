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

import numpy as np

warnings.filterwarnings("ignore")

DECIDE_WEEK = 30


def impact_draw(out: Path, customers: int, seed: int) -> dict[str, float]:
    from training.config import load_config
    from training.pipelines.impact import impact
    from training.policy.control import control_mask
    from training.synth.actions import ACTION_COSTS
    from training.synth.campaigns import targeted_probabilities
    from training.synth.live import LiveWorld, draw_decisions, true_net

    config = load_config()
    world = LiveWorld.create(customers, seed=seed, weeks=DECIDE_WEEK + 15, truth_reps=4)
    world.advance(DECIDE_WEEK)
    pos = world.decidable()
    probs = targeted_probabilities(world.pop.take(pos), world.state.take(pos), world.week)
    share = config.decisioning.control_share
    control = control_mask(world.ids(pos), share, config.decisioning.control_salt)
    rng = np.random.default_rng(seed)
    arms, propensity = draw_decisions(probs, control, share, rng)
    net = true_net(world.truth(pos), np.array(ACTION_COSTS), {"value": 1.0})
    truth = float(np.mean((probs * net).sum(axis=1)))
    world.decide(pos, arms, propensity)
    world.advance(DECIDE_WEEK + 14)
    world.write(out)
    overall = impact(out, seed=seed).tables["overall"].iloc[0]
    estimate, ci = float(overall["incremental_value"]), float(overall["ci"])
    return {"estimate": estimate, "ci": ci, "truth": truth, "decisions": len(pos),
            "covered": bool(abs(estimate - truth) <= ci)}  # fmt: skip


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
