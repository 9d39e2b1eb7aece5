"""Eligibility rules: safe parsing, vectorised evaluation, three-valued logic for missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.errors import ConfigError
from training.rules import RuleError, compile_rule, context_name, is_request_name

BATCH = {
    "complaints_30d": pd.Series([0.0, 2.0, np.nan, 0.0, 1.0]),
    "plan": pd.Series(["basic", "premium", None, "standard", "premium"], dtype="category"),
    "churn_probability": np.array([0.01, 0.5, 0.2, 0.03, np.nan]),
}


def _row(i: int) -> dict[str, object]:
    """The namespace of one customer, as the online service builds it (plain scalars)."""
    return {k: (v.iloc[i] if isinstance(v, pd.Series) else v[i]) for k, v in BATCH.items()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("complaints_30d > 0", [False, True, False, False, True]),
        ("churn_probability > 0.02", [False, True, True, True, False]),
        ("plan in ['basic', 'standard']", [True, False, False, True, False]),
        ("plan not in ('basic', 'standard')", [False, True, False, False, True]),
        ("plan != 'premium'", [True, False, False, True, False]),
        ("plan == 'premium' and complaints_30d >= 1", [False, True, False, False, True]),
        ("complaints_30d > 0 or churn_probability > 0.02", [False, True, True, True, True]),
        ("not complaints_30d > 0", [True, False, False, True, False]),
        ("0.02 < churn_probability < 0.3", [False, False, True, True, False]),
        ("complaints_30d * 2 + 1 >= 3", [False, True, False, False, True]),
        ("isnull(complaints_30d)", [False, False, True, False, False]),
        ("coalesce(complaints_30d, 5) > 4", [False, False, True, False, False]),
        (
            "max(complaints_30d, 1) == 1 and abs(-churn_probability) < 0.1",
            [True] + [False] * 2 + [True, False],
        ),
    ],
)
def test_batch_and_single_customer_agree(text: str, expected: list[bool]) -> None:
    rule = compile_rule(text)
    batch = rule.evaluate(BATCH)
    assert isinstance(batch, np.ndarray) and batch.dtype == bool
    assert batch.tolist() == expected
    assert [rule.evaluate(_row(i)) for i in range(5)] == expected


def test_and_binds_tighter_than_or() -> None:
    ns = {"a": np.array([1, 1, 0, 0]), "b": np.array([0, 0, 1, 1]), "c": np.array([0, 1, 0, 1])}
    assert compile_rule("a or b and c").evaluate(ns).tolist() == [True, True, False, True]
    assert compile_rule("(a or b) and c").evaluate(ns).tolist() == [False, True, False, True]
    assert compile_rule("not a and b").evaluate(ns).tolist() == [False, False, True, True]


def test_missing_values_are_not_eligible_even_under_not() -> None:
    ns = {"x": np.array([np.nan, np.nan, 1.0]), "y": np.array([5.0, 0.0, 0.0])}
    assert compile_rule("x > 0").evaluate(ns).tolist() == [False, False, True]
    assert compile_rule("not x > 0").evaluate(ns).tolist() == [False, False, False]
    assert compile_rule("x != 3").evaluate(ns).tolist() == [False, False, True]
    # unknown or true is true; unknown and false is false: SQL's three-valued logic
    assert compile_rule("x > 0 or y > 1").evaluate(ns).tolist() == [True, False, True]
    assert compile_rule("None_like > 0").evaluate({"None_like": None}) is False


def test_dataframe_and_nullable_dtypes_work_as_namespace() -> None:
    frame = pd.DataFrame(
        {"n": pd.array([1, None, 3], dtype="Int64"), "flag": pd.array([True, None, False])}
    )
    assert compile_rule("n >= 1 and flag").evaluate(frame).tolist() == [True, False, False]


def test_names_are_the_variables_read_not_the_functions() -> None:
    rule = compile_rule("max(contacts_90d, complaints_90d) > 0 or plan in ['basic']")
    assert rule.names == {"contacts_90d", "complaints_90d", "plan"}


def test_rule_without_names_is_a_plain_bool() -> None:
    assert compile_rule("1 < 2").evaluate({}) is True


def test_unknown_name_is_named_with_a_suggestion() -> None:
    rule = compile_rule("complaint_30d > 0")
    with pytest.raises(
        RuleError, match=r"unknown name 'complaint_30d' \(did you mean 'complaints_30d'"
    ):
        rule.evaluate(BATCH)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("x.__class__", "attribute access is not allowed"),
        ("[c for c in x]", "comprehensions are not allowed"),
        ("open('f')", "function 'open' is not allowed"),
        ("(lambda: 1)()", "is not allowed"),
        ("x[0] > 1", "subscripts are not allowed"),
        ("x is None", "'is' is not supported"),
        ("plan in other", "'in' needs a literal list"),
        ("2 ** 999999", "operator '\\*\\*' is not supported"),
        ("max(x=1)", "takes no keyword arguments"),
        ("abs(x, y)", "abs\\(\\) takes 1 argument"),
        ("x == None", "None is not supported"),
        ("complaints_30d >", "cannot parse 'complaints_30d >'"),
        ("a = 1", "cannot parse"),
        ("", "empty rule"),
    ],
)
def test_rejected_constructs(text: str, reason: str) -> None:
    with pytest.raises(RuleError, match=reason) as caught:
        compile_rule(text)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in str(caught.value)


def test_type_mismatch_at_evaluation_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match="cannot evaluate"):
        compile_rule("plan > 3").evaluate({"plan": np.array(["basic", "premium"], dtype=object)})


def test_string_repetition_is_not_possible() -> None:
    with pytest.raises(RuleError, match="cannot evaluate"):
        compile_rule("'a' * 1000000000 == 'a'").evaluate({})


def test_request_names_are_channel_and_context_keys() -> None:
    assert context_name("call_reason") == "context_call_reason"
    assert context_name("Call Reason-2") == "context_call_reason_2"
    rule = compile_rule("context_call_reason == 'billing' and channel != 'app' and x > 0")
    assert rule.request_names == {"context_call_reason", "channel"}
    assert is_request_name("channel") and not is_request_name("channel_app_count_30d")


def test_a_missing_context_key_makes_comparisons_false() -> None:
    rule = compile_rule("context_call_reason == 'billing'")
    assert rule.evaluate({"context_call_reason": "billing"}) is True
    assert rule.evaluate({"context_call_reason": None}) is False
    assert (
        compile_rule("not context_call_reason == 'billing'").evaluate({"context_call_reason": None})
        is False
    )


def test_monotone_rules_test_no_missing_value() -> None:
    assert compile_rule("event_type == 'complaint' and churn_probability > 0.1").monotone
    assert not compile_rule("event_type == 'x' or isnull(nps_last)").monotone
    assert not compile_rule("coalesce(a, 1) > 0").monotone


AGREEMENT_RULES = [
    "x > 0", "x == y", "x != 'a'", "not x", "x and y", "x or not y", "x < y <= 1",
    "x in ['a', 1, 0]", "x not in ('', 'b')", "isnull(x) or y >= 0", "coalesce(x, y) > 0",
    "max(x, 1) == 1 and not y", "x * 2 - y < 1", "abs(x) >= y or x == 'a'",
]  # fmt: skip
VALUES = [0.0, 1.0, -2.5, np.nan, None, True, False, 3, "a", "", "b", pd.NA]


def _column_of_one(value: object) -> np.ndarray:
    """A one-row column as a batch holds it: text as objects, the rest as floats (NaN: missing)."""
    if isinstance(value, str):
        return np.array([value], dtype=object)
    return np.array([np.nan if value is None or value is pd.NA else float(value)])  # type: ignore[arg-type]


def _outcome(rule_text: str, namespace: dict[str, object]) -> object:
    try:
        result = compile_rule(rule_text).evaluate(namespace)
    except RuleError:
        return "error"
    return bool(np.asarray(result).ravel()[0])


@pytest.mark.parametrize("text", AGREEMENT_RULES)
def test_one_customer_agrees_with_a_column_of_one(text: str) -> None:
    """The one-customer shortcuts (plain Python on 0-d values) decide exactly as the column path
    does on a column holding the same value, missing and mixed types included."""
    for x in VALUES:
        for y in VALUES:
            column = {"x": _column_of_one(x), "y": _column_of_one(y)}
            scalar = _outcome(text, {"x": x, "y": y})
            assert scalar == _outcome(text, column), (text, x, y)
