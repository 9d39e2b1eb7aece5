"""The global control group: a stable, salted-hash share of customers who never get an action.

Membership depends only on the customer id, the salt and the share, so the online service, batch
scoring and analysts' notebooks agree on it without a lookup table, and raising the share only adds
members (a customer's hash point does not move).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

_SCALE = float(2**64)


def hash_point(customer_id: str, salt: str) -> float:
    """A uniform point in [0, 1) for (salt, customer id): blake2b, stable across processes."""
    digest = hashlib.blake2b(f"{salt}\x1f{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def in_control(customer_id: str, share: float, salt: str) -> bool:
    """Whether one customer belongs to the global control group."""
    return share > 0 and hash_point(customer_id, salt) < share


def control_mask(customer_ids: Iterable[str], share: float, salt: str) -> NDArray[np.bool_]:
    """`in_control` for many customers (batch scoring): a boolean array in input order."""
    ids = list(customer_ids)
    if share <= 0:
        return np.zeros(len(ids), dtype=bool)
    return np.fromiter((hash_point(str(c), salt) < share for c in ids), dtype=bool, count=len(ids))
