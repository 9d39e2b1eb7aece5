"""The last step of `make demo`: start the real service, ask it for one customer's next best actions
over HTTP, print the answer, stop the service.

The customer is one the nightly batch (`out/score/actions.parquet`) recommends something to, so
the first answer a new user sees has actions in it; without batch output, the store's first one.

    python -m serving.online.live_demo --store out/online_store.sqlite [--actions out/score/actions.parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.json import JSON

STARTUP_SECONDS = 180
CHANNEL = "call_center"
CONTEXT = {"call_reason": "billing question"}


def pick_customer(store: Path, actions: Path) -> str:
    """A customer with a recommended action in the batch output, else the store's first one."""
    if actions.is_file():
        table = pd.read_parquet(actions, columns=["customer_id", "rank", "expected_value"])
        recommended = table[(table["rank"] == 1) & (table["expected_value"] > 0)]
        if len(recommended):
            return str(recommended["customer_id"].iloc[0])
    with sqlite3.connect(f"file:{store.resolve()}?mode=ro", uri=True) as con:
        (customer,) = con.execute("SELECT customer_id FROM features LIMIT 1").fetchone()
    return str(customer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: dict[str, object] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a JSON POST when `body` is given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own 127.0.0.1)
        return int(response.status), bytes(response.read())


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the service exited before it was ready (see its output above)")
        try:
            if call(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service was not ready within {STARTUP_SECONDS} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("out/online_store.sqlite"))
    parser.add_argument("--actions", type=Path, default=Path("out/score/actions.parquet"))
    args = parser.parse_args()
    console = Console()
    customer = pick_customer(args.store, args.actions)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    nextbest = str(Path(sys.executable).with_name("nextbest"))
    with tempfile.TemporaryDirectory(prefix="nextbest-live-") as tmp:
        command = [nextbest, "serve", "--port", str(port), "--store", str(args.store),
                   "--log", str(Path(tmp) / "decision_log.sqlite")]  # fmt: skip
        env = os.environ | {"BENTOML_HOME": str(Path(tmp) / "bentoml")}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_ready(base, process)
            body: dict[str, object] = {
                "customer_id": customer,
                "channel": CHANNEL,
                "context": CONTEXT,
            }
            console.print(f"[bold]POST {base}/recommend[/] {json.dumps(body)}")
            _, answer = call(f"{base}/recommend", body)
            console.print(JSON(answer.decode()))
        finally:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
