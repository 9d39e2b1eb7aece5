"""The client's deadline, header `X-Request-Deadline` (docs/api.md, "Request deadline"): the time
after which the client no longer waits for the answer, so the service makes no write the client
would never see the answer of (a decision logged but never shown biases the next training).

Absolute, not relative as gRPC's `grpc-timeout` or Envoy's `x-envoy-expected-rq-timeout-ms` are:
a relative timeout can only start when a worker reads the request, and misses the time it waited
in the kernel's backlog (every worker restarting), which is the case it is for. So it relies on the
client's and the service's clocks agreeing (NTP). Optional: without it the service falls back on
noticing a closed connection. Pure: parsing and the messages, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime

HEADER = "X-Request-Deadline"
RAW_HEADER = HEADER.lower().encode()  # as ASGI scopes carry header names
EPOCH_SECONDS = re.compile(r"[0-9]{1,11}(\.[0-9]{1,9})?")
FORMS = (
    "Unix epoch seconds such as 1793614503.25, or an RFC 3339 time with its UTC offset such as "
    "2026-11-02T10:15:03.25Z"
)


class BadDeadlineError(ValueError):
    """The header's value is not a deadline (its message names the header, never the value)."""


def parse_deadline(values: list[bytes]) -> float | None:
    """The deadline in Unix epoch seconds of the header's values (all the request's
    `X-Request-Deadline` lines; none: no deadline, None)."""
    if not values:
        return None
    if len(values) > 1:
        raise BadDeadlineError(f"{HEADER}: sent {len(values)} times; send one deadline")
    text = values[0].decode("latin-1").strip()
    if EPOCH_SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadDeadlineError(f"{HEADER}: not a deadline; send {FORMS}") from None
    if moment.tzinfo is None:  # a date alone, or a local time: whose?
        raise BadDeadlineError(f"{HEADER}: a time needs its UTC offset (Z or +hh:mm); send {FORMS}")
    return moment.timestamp()


def passed(deadline: float | None, now: float) -> bool:
    """Whether the client has stopped waiting at `now` (Unix epoch seconds)."""
    return deadline is not None and now >= deadline


def expired_message(deadline: float, now: float) -> str:
    """The 408's message: what passed, by how much on the service's clock (a client whose clock
    runs behind sees the gap here), and that nothing was done."""
    return (
        f"{HEADER} passed {now - deadline:.3f} s before the service could answer (its clock); "
        "nothing was decided or stored"
    )
