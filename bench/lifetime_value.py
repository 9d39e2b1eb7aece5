"""Lifetime value against its peers, in the same run (issue 21).

Simulator: train on a synthetic world with `lifetime_months: 12`, score at the end of the data
(2026-11-02), and compare with the simulator's truth `value_12m` (expected revenue over the next
12 months from its own dynamics): nextbest's `ltv`, BG/NBD x Gamma-Gamma of the `lifetimes`
package on the same purchase history, and the label-window revenue scaled to 12 months.

CDNOW (the full CDNOW master log shipped inside `lifetimes`: 23,570 customers' CD purchases,
1997-01 to 1998-06): calibration up to 1997-09-30, holdout the next 273 days (39 weeks), as in
Fader, Hardie & Lee. nextbest trains on the calibration period only (its purchases as `events`),
scores at 1997-10-01 with `lifetime_months: 9`; the peers see the same calibration purchases.

This is evaluation code: it may read the ground truth; training never does.

Fit time: BG/NBD x Gamma-Gamma (the one lifetime method that fits anything) on N customers'
purchase summaries, CDNOW's tiled with jitter, then their 12-month values.

    python bench/lifetime_value.py --sim DATA_DIR | --cdnow | --fit-rows N   # one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SIM_AS_OF = date(2026, 11, 2)
CDNOW_CUT = pd.Timestamp("1997-10-01")  # calibration: purchases before this day
CDNOW_HOLDOUT_DAYS = 273


def figures(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from training.evaluation.metrics import normalized_gini, pearson, spearman

    return {
        "pearson": pearson(y, pred),
        "spearman": spearman(y, pred),
        "normalized_gini": normalized_gini(y, pred),
    }


def write_config(folder: Path, months: int, churn: bool) -> Path:
    """The demo config with a lifetime horizon (and, for a shop without churn events, only the
    value outcome and no actions)."""
    demo = yaml.safe_load((REPO / "training/demo/config.yaml").read_text())
    demo["objective"]["lifetime_months"] = months
    if not churn:
        demo = {
            "outcomes": {"value": demo["outcomes"]["value"]},
            "objective": {"value_outcome": "value", "lifetime_months": months},
        }
    else:
        shutil.copy(REPO / "training/demo/actions.yaml", folder / "actions.yaml")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(demo, sort_keys=False))
    return path


def daily_summary(purchases: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """lifetimes' RFM summary (`summary_data_from_transaction_data`, freq "D"), computed here
    because its own helper trips over pandas 3: purchases summed per day; frequency = days with
    purchases after the first, recency = days from the first to the last, T = days from the first
    to the day before `cut`, monetary_value = mean spend of the repeat days."""
    tx = purchases[(purchases.ts < cut) & (purchases.value > 0)]
    days = tx.assign(day=tx.ts.dt.floor("D")).groupby(["customer_id", "day"]).value.sum()
    days = days.reset_index()
    first = days.groupby("customer_id").day.transform("min")
    g = days.assign(repeat=days.day > first).groupby("customer_id")
    end = cut - pd.Timedelta(days=1)
    summary = pd.DataFrame({
        "frequency": g.repeat.sum().astype(float),
        "recency": (g.day.max() - g.day.min()).dt.days.astype(float),
        "T": (end - g.day.min()).dt.days.astype(float),
    })  # fmt: skip
    repeat = days[days.day > first].groupby("customer_id").value.mean()
    summary["monetary_value"] = repeat.reindex(summary.index).fillna(0.0)
    return summary


def bgnbd_peer(
    purchases: pd.DataFrame, cut: pd.Timestamp, ids: pd.Series, days: float
) -> np.ndarray:
    """`lifetimes` BG/NBD x Gamma-Gamma: expected revenue over `days` after `cut` for `ids`,
    fitted on every customer's purchases before `cut` (daily summary, as its docs do)."""
    warnings.filterwarnings("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    summary = daily_summary(purchases, cut)
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(summary.frequency, summary.recency, summary["T"])
    repeat = summary[summary.frequency > 0]
    gg = GammaGammaFitter(penalizer_coef=0.0).fit(repeat.frequency, repeat.monetary_value)
    count = bg.conditional_expected_number_of_purchases_up_to_time(
        days, summary.frequency, summary.recency, summary["T"]
    )
    spend = gg.conditional_expected_average_profit(summary.frequency, summary.monetary_value)
    value = (count * spend).reindex(ids).to_numpy(dtype=np.float64)
    # customers without a purchase before the cut: BG/NBD has no history for them, the
    # population's expected purchases of a newcomer x its mean spend
    newcomer = float(bg.expected_number_of_purchases_up_to_time(days)) * float(
        gg.conditional_expected_average_profit(pd.Series([0]), pd.Series([0.0])).iloc[0]
    )
    return np.where(np.isfinite(value), value, newcomer)


def retention_values(data: Path, bundle: object) -> dict[str, object]:
    """Predicted net value of every action on the held-out exposures, with `ltv` over the
    lifetime and with today's label-window `ltv`, each against the true net value that counts
    the value kept beyond the window: (value_a - value_control) + (churn_control - churn_a) x
    the truth's revenue after the window of a customer alive at its end - cost."""
    from training.config import CONTROL
    from training.data.contract import open_dataset
    from training.evaluation.decisions import decide, held_out_exposures
    from training.evaluation.metrics import pearson, spearman
    from training.features.definition import to_matrix
    from training.policy.value import net_value
    from training.synth.oracle import load_exposure_truth

    config = bundle.config  # type: ignore[attr-defined]
    with open_dataset(data).connect() as con:
        frame, held, exposed = held_out_exposures(con, bundle)  # type: ignore[arg-type]
    rows = frame[held].reset_index(drop=True)
    X = to_matrix(bundle.prepare(rows), list(bundle.builder.feature_names_))  # type: ignore[attr-defined]
    d = decide(bundle, rows, X, exposed)  # type: ignore[arg-type]
    truth = load_exposure_truth(data.with_name(data.name + "_truth"), rows)
    ids = list(config.catalog.ids)
    churn0, value0 = truth[f"churn_{CONTROL}"], truth[f"value_{CONTROL}"]
    beyond = np.maximum(truth["value_12m_control"] - value0, 0.0) / (1.0 - churn0)
    true = np.column_stack([
        truth[f"value_{a}"] - value0 + (churn0 - truth[f"churn_{a}"]) * beyond for a in ids
    ]) - d.cost  # fmt: skip
    window = config.objective.model_copy(update={"lifetime_months": None})
    today = net_value(d.uplift, {"ltv": d.scores["window_value"]}, d.cost, window, config.outcomes)
    ok = np.isfinite(true).all(axis=1)
    pairs = {"lifetime ltv": d.expected[ok], "90-day ltv": today.expected_value[ok]}
    return {
        "rows": int(ok.sum()),
        "actions": len(ids),
        **{name: {"pearson": pearson(true[ok].ravel(), v.ravel()),
                  "spearman": spearman(true[ok].ravel(), v.ravel())}
           for name, v in pairs.items()},
        "mean_true": float(np.mean(true[ok])),
    }  # fmt: skip


def train_and_score(data: Path, config: Path, as_of: date) -> tuple[pd.DataFrame, dict, float]:
    from training.data.contract import open_dataset
    from training.pipelines.train import train
    from training.registry.mlflow_models import load_bundle

    start = time.perf_counter()
    result = train(data, config)
    seconds = time.perf_counter() - start
    bundle = load_bundle(result.version)
    with open_dataset(data).connect() as con:
        features = bundle.builder.transform(con, as_of=as_of)
    scores = bundle.score_frame(features).set_index("customer_id")
    assert bundle.lifetime is not None
    chosen = {"method": bundle.lifetime.method, "selection": bundle.lifetime.selection}
    if (
        bundle.uplift
        and (data.with_name(data.name + "_truth") / "exposures_truth.parquet").exists()
    ):
        chosen["retention"] = retention_values(data, bundle)
    return scores, chosen, seconds


def simulator(data: Path, work: Path) -> dict[str, object]:
    truth = pd.read_parquet(data.with_name(data.name + "_truth") / "customers_truth.parquet")
    truth = truth[pd.to_datetime(truth.as_of) == pd.Timestamp(SIM_AS_OF)].reset_index(drop=True)
    scores, chosen, seconds = train_and_score(data, write_config(work, 12, churn=True), SIM_AS_OF)
    ids = truth.customer_id
    y = truth.value_12m.to_numpy()
    events = pd.read_parquet(
        data / "events.parquet", columns=["customer_id", "ts", "event_type", "value"]
    )
    purchases = events[events.event_type == "purchase"][["customer_id", "ts", "value"]]
    days = 12 * 365.25 / 12
    window = scores.loc[ids, "window_value"].to_numpy()
    return {
        "customers": len(truth),
        "train_seconds": seconds,
        "chosen": chosen,
        "nextbest": figures(y, scores.loc[ids, "ltv"].to_numpy()),
        "bgnbd_gg": figures(y, bgnbd_peer(purchases, pd.Timestamp(SIM_AS_OF), ids, days)),
        "window_scaled": figures(y, window * days / 90),
        "mean_ratio": float(scores.loc[ids, "ltv"].mean() / y.mean()),
    }


def cdnow_log() -> pd.DataFrame:
    """The CDNOW master log from the installed `lifetimes` package: customer_id, ts, value."""
    import lifetimes

    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    raw = pd.read_csv(path, sep=r"\s+", header=0, names=["customer_id", "date", "cds", "value"],
                      dtype={"customer_id": str, "date": str})  # fmt: skip
    return pd.DataFrame({"customer_id": "C" + raw.customer_id,
                         "ts": pd.to_datetime(raw.date, format="%Y%m%d"),
                         "value": raw.value.astype(float)})  # fmt: skip


def cdnow(work: Path) -> dict[str, object]:
    log = cdnow_log()
    data = work / "cdnow"
    data.mkdir()
    cal = log[log.ts < CDNOW_CUT]
    ids = pd.Series(sorted(log.customer_id.unique()))
    pd.DataFrame({"customer_id": ids}).to_parquet(data / "customers.parquet")
    cal.assign(channel="store", event_type="purchase")[
        ["customer_id", "ts", "channel", "event_type", "value"]
    ].to_parquet(data / "events.parquet")
    end = CDNOW_CUT + pd.Timedelta(days=CDNOW_HOLDOUT_DAYS)
    hold = log[(log.ts >= CDNOW_CUT) & (log.ts < end)].groupby("customer_id").value.sum()
    y = hold.reindex(ids).fillna(0.0).to_numpy()
    scores, chosen, seconds = train_and_score(
        data, write_config(work, 9, churn=False), CDNOW_CUT.date()
    )
    ltv_days = 9 * 365.25 / 12
    ours = scores.loc[ids, "ltv"].to_numpy() * CDNOW_HOLDOUT_DAYS / ltv_days  # same horizon
    window = scores.loc[ids, "window_value"].to_numpy()
    return {
        "customers": len(ids),
        "train_seconds": seconds,
        "chosen": chosen,
        "nextbest": figures(y, ours),
        "bgnbd_gg": figures(y, bgnbd_peer(log, CDNOW_CUT, ids, CDNOW_HOLDOUT_DAYS)),
        "window_scaled": figures(y, window * CDNOW_HOLDOUT_DAYS / 90),
        "window_value_90d": figures(y, window),
    }


def fit_rows(n: int) -> dict[str, object]:
    from training.scores.lifetime import RepeatPurchaseModel

    summary = daily_summary(cdnow_log(), CDNOW_CUT)
    base = summary[["frequency", "recency", "T", "monetary_value"]].to_numpy()
    rng = np.random.default_rng(0)
    X = base[rng.integers(0, len(base), n)]
    X[:, 2] += rng.integers(0, 60, n)  # customers of different ages
    start = time.perf_counter()
    model = RepeatPurchaseModel(horizon=365.25, discount_rate=0.1).fit(X)
    fitted = time.perf_counter() - start
    value = model.predict(X)
    return {"rows": n, "fit_seconds": fitted, "seconds": time.perf_counter() - start,
            "mean_value": float(value.mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sim", type=Path, help="a data set written by `nextbest synth`")
    parser.add_argument("--cdnow", action="store_true", help="the CDNOW rows instead")
    parser.add_argument("--fit-rows", type=int, default=0, help="time the fit on N customers")
    args = parser.parse_args()
    if args.fit_rows:
        print(json.dumps(fit_rows(args.fit_rows)))
        return
    work = Path(tempfile.mkdtemp(prefix="nextbest-ltv-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    sim = args.sim.resolve() if args.sim else None
    os.chdir(work)
    try:
        out = cdnow(work) if args.cdnow else simulator(sim, work) if sim else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
