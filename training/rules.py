"""Eligibility rules: a small, safe expression language evaluated on whole columns at once.

A rule such as ``complaints_30d > 0 and plan in ['basic', 'standard']`` is parsed once with Python's
``ast`` module, checked against a whitelist, and evaluated with a ``simpleeval`` evaluator whose
boolean operators work element-wise on numpy arrays. Python's ``eval`` is never used.

Missing values follow SQL's three-valued logic: a comparison with a missing value is *unknown*,
``and``/``or``/``not`` propagate unknown (``unknown or True`` is True), and a rule whose final value is
unknown is not eligible. ``isnull(x)`` and ``coalesce(x, default)`` handle missing values explicitly.
"""

from __future__ import annotations

import ast
import difflib
import operator as op
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from simpleeval import SimpleEval

from training.errors import ConfigError

MAX_RULE_LENGTH = 2000
Array = NDArray[Any]
#: names a rule reads from the request, not the customer: its channel and each context key
CHANNEL_NAME = "channel"
CONTEXT_PREFIX = "context_"


def context_name(key: str) -> str:
    """The rule name of a request context key: ``call_reason`` -> ``context_call_reason``
    (lowercase, every character outside ``a-z0-9_`` replaced by ``_``, like feature names)."""
    return CONTEXT_PREFIX + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                                    for c in key.lower())  # fmt: skip


#: names a trigger reads from the incoming event (besides the customer's features and scores)
EVENT_NAMES = ("event_type", "channel", "value")


def is_request_name(name: str) -> bool:
    """Whether a rule name is read from the request (`channel`, `context_<key>`): missing where
    there is no request (batch scoring, evaluation), so comparisons on it are false there."""
    return name == CHANNEL_NAME or name.startswith(CONTEXT_PREFIX)


class RuleError(ConfigError):
    """A rule cannot be compiled or evaluated; the message says why in one line."""


# --- values: every operand is a numpy array (0-d for one customer); logic values are floats -----
# Logic values are float arrays holding 1.0 (true), 0.0 (false) or NaN (unknown).


def _as_array(value: object) -> Array:
    """Normalise a namespace value (scalar, numpy array, pandas Series/array) to a numpy array."""
    if isinstance(value, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        series = pd.Series(value, copy=False)
        if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
            return series.to_numpy(dtype="float64", na_value=np.nan)
        return series.to_numpy(dtype=object, na_value=np.nan)
    if value is None or value is pd.NA or value is pd.NaT:
        return np.asarray(np.nan)
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return array.astype("float64")
    if array.dtype.kind in "US":
        return array.astype(object)
    return array


def _isna(value: Array) -> NDArray[np.bool_]:
    if np.ndim(value) == 0:  # one customer: pandas' array machinery costs more than the test
        return np.asarray(_missing(np.asarray(value)[()]))
    return np.asarray(pd.isna(value), dtype=bool)


def _missing(scalar: object) -> bool:
    return bool(pd.isna(scalar))  # type: ignore[call-overload]


def _truth(value: Array) -> Array:
    """Truth value of an operand as a logic array (NaN where the operand is missing)."""
    value = np.asarray(value)
    if value.ndim == 0 and value.dtype.kind in "fbiuO":  # one customer: plain Python, same logic
        scalar = value[()]
        return np.asarray(np.nan if _missing(scalar) else float(bool(scalar)))
    if value.dtype.kind == "f":
        return np.where(np.isnan(value), np.nan, (value != 0).astype("float64"))
    if value.dtype.kind in "biu":
        return (value != 0).astype("float64")
    if value.dtype.kind == "O":
        return np.where(_isna(value), np.nan, value.astype(bool).astype("float64"))
    raise RuleError(f"a value of type {value.dtype} cannot be used as a condition")


def _and(a: Array, b: Array) -> Array:
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        x, y = float(a), float(b)
        return np.asarray(0.0 if x == 0 or y == 0 else np.nan if x != x or y != y else 1.0)
    unknown = np.isnan(a) | np.isnan(b)
    return np.where((a == 0) | (b == 0), 0.0, np.where(unknown, np.nan, 1.0))


def _or(a: Array, b: Array) -> Array:
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        x, y = float(a), float(b)
        return np.asarray(1.0 if x == 1 or y == 1 else np.nan if x != x or y != y else 0.0)
    unknown = np.isnan(a) | np.isnan(b)
    return np.where((a == 1) | (b == 1), 1.0, np.where(unknown, np.nan, 0.0))


def _compare(func: Callable[[Any, Any], Any], a: Array, b: Array) -> Array:
    """Element-wise comparison; unknown (NaN) wherever either side is missing."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 0 and b.ndim == 0:  # one customer: no masks to build
        x, y = a[()], b[()]
        if _missing(x) or _missing(y):
            return np.asarray(np.nan)
        return np.asarray(1.0 if func(x, y) else 0.0)
    a, b = np.broadcast_arrays(a, b)
    known = ~(_isna(a) | _isna(b))
    out = np.full(a.shape, np.nan)
    out[known] = np.asarray(func(a[known], b[known]), dtype=bool)
    return out


def _member(a: Array, choices: list[object]) -> Array:
    """``a in [c1, c2, ...]`` as the ``or`` of equalities, so it shares their missing-value logic."""
    if not choices:
        return np.where(_isna(np.asarray(a)), np.nan, 0.0)
    return reduce(_or, (_compare(op.eq, a, np.asarray(choice)) for choice in choices))


def _coalesce(*values: Array) -> Array:
    return reduce(lambda a, b: np.where(_isna(a), b, a), values)


FUNCTIONS: dict[str, Callable[..., Array]] = {
    "abs": lambda x: np.abs(x),
    "min": lambda *xs: reduce(np.minimum, xs),
    "max": lambda *xs: reduce(np.maximum, xs),
    "isnull": lambda x: _isna(x).astype("float64"),
    "notnull": lambda x: (~_isna(x)).astype("float64"),
    "coalesce": _coalesce,
}
_ARITY = {"abs": (1, 1), "isnull": (1, 1), "notnull": (1, 1), "min": (2, 9), "max": (2, 9)}
_ARITY |= {"coalesce": (2, 9)}

_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: op.eq,
    ast.NotEq: op.ne,
    ast.Lt: op.lt,
    ast.LtE: op.le,
    ast.Gt: op.gt,
    ast.GtE: op.ge,
}
_ARITHMETIC: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: op.add,
    ast.Sub: op.sub,
    ast.Mult: op.mul,
    ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv,
    ast.Mod: op.mod,
    ast.USub: op.neg,
    ast.UAdd: op.pos,
}


# --- static checks: what a rule may contain ---------------------------------------------------

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.BinOp, ast.Compare,
    ast.Name, ast.Load, ast.Constant, ast.Call, ast.List, ast.Tuple,
    *_COMPARISONS, *_ARITHMETIC, ast.In, ast.NotIn,
)  # fmt: skip
_REASONS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.IfExp: "'x if c else y' is not supported",
    ast.NamedExpr: "assignment is not allowed",
    ast.Is: "'is' is not supported; use isnull(x) or ==",
    ast.IsNot: "'is not' is not supported; use notnull(x) or !=",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed; use a list after 'in'",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "'await' is not allowed",
    **{
        operator: f"operator '{symbol}' is not supported"
        for operator, symbol in [
            (ast.Pow, "**"),
            (ast.BitAnd, "&"),
            (ast.BitOr, "|"),
            (ast.BitXor, "^"),
            (ast.LShift, "<<"),
            (ast.RShift, ">>"),
            (ast.Invert, "~"),
            (ast.MatMult, "@"),
        ]
    },  # fmt: skip
}


def _literal_list_ids(tree: ast.AST) -> set[int]:
    """Ids of the list/tuple nodes that are the right side of ``in``: the only place lists may be."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operation, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(operation, ast.In | ast.NotIn):
                continue
            if not isinstance(right, ast.List | ast.Tuple) or not all(
                isinstance(e, ast.Constant) for e in right.elts
            ):
                raise RuleError("'in' needs a literal list, e.g. plan in ['basic', 'standard']")
            allowed.add(id(right))
    return allowed


def _check_call(node: ast.Call) -> None:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS:
        called = name or ast.unparse(node.func)
        raise RuleError(
            f"function '{called}' is not allowed (allowed: {', '.join(sorted(FUNCTIONS))})"
        )
    if node.keywords:
        raise RuleError(f"{name}() takes no keyword arguments")
    low, high = _ARITY[name]
    if not low <= len(node.args) <= high:
        raise RuleError(f"{name}() takes {low if low == high else f'at least {low}'} argument(s)")


def _check_node(node: ast.AST, literal_lists: set[int]) -> None:
    if isinstance(node, ast.Call):
        _check_call(node)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, bool | int | float | str):
            hint = "; use isnull(x)" if node.value is None else ""
            raise RuleError(f"the constant {node.value!r} is not supported{hint}")
    elif isinstance(node, ast.List | ast.Tuple):
        if id(node) not in literal_lists:
            raise RuleError("lists are only allowed after 'in'")
    elif not isinstance(node, _ALLOWED_NODES):
        reason = _REASONS.get(type(node), f"'{type(node).__name__}' is not supported")
        raise RuleError(reason)


def _check(tree: ast.Expression) -> None:
    literal_lists = _literal_list_ids(tree)
    for node in ast.walk(tree):
        _check_node(node, literal_lists)


def _names(tree: ast.AST) -> frozenset[str]:
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return frozenset(
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called
    )


# --- evaluation -------------------------------------------------------------------------------


class _VectorEval(SimpleEval):
    """simpleeval evaluator whose operators work element-wise on arrays with three-valued logic."""

    def __init__(self) -> None:
        super().__init__(operators=dict(_ARITHMETIC), functions=dict(FUNCTIONS), names={})
        self.nodes: dict[type[ast.AST], Callable[..., Any]] = {  # only what rules may contain
            ast.Name: self._eval_name,
            ast.UnaryOp: self._eval_unaryop,
            ast.BinOp: self._eval_binop,
            ast.BoolOp: self._eval_boolop,
            ast.Compare: self._eval_compare,
            ast.Call: self._eval_call,
            ast.Constant: self._eval_constant,
            ast.List: self._eval_list,
            ast.Tuple: self._eval_list,
        }

    @staticmethod
    def _eval_constant(node: ast.Constant) -> object:
        value = node.value
        if isinstance(value, bool | int | float):
            return np.asarray(float(value))  # floats: no big-integer or string-repeat bombs
        return value

    def _eval_list(self, node: ast.List | ast.Tuple) -> list[object]:
        return [self._eval(element) for element in node.elts]

    def _eval_boolop(self, node: ast.BoolOp) -> Array:
        combine = _and if isinstance(node.op, ast.And) else _or
        return reduce(combine, (_truth(self._eval(value)) for value in node.values))

    def _eval_unaryop(self, node: ast.UnaryOp) -> Array:
        operand = self._eval(node.operand)
        if isinstance(node.op, ast.Not):
            return 1.0 - _truth(operand)
        return np.asarray(self.operators[type(node.op)](np.asarray(operand)))

    def _eval_compare(self, node: ast.Compare) -> Array:
        result: Array | None = None
        left = self._eval(node.left)
        for operation, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comparator)
            if isinstance(operation, ast.In | ast.NotIn):
                step = _member(left, right)
                step = 1.0 - step if isinstance(operation, ast.NotIn) else step
            else:
                step = _compare(_COMPARISONS[type(operation)], left, right)
            result = step if result is None else _and(result, step)
            left = right
        assert result is not None
        return result

    def _eval_call(self, node: ast.Call) -> Array:
        function = self.functions[cast(ast.Name, node.func).id]
        return np.asarray(function(*(self._eval(a) for a in node.args)))


_LOCAL = threading.local()


def _evaluator() -> _VectorEval:
    """One evaluator per thread: evaluation sets per-call state on it (names, expression)."""
    evaluator: _VectorEval | None = getattr(_LOCAL, "evaluator", None)
    if evaluator is None:
        evaluator = _LOCAL.evaluator = _VectorEval()
    return evaluator


@dataclass(frozen=True)
class Rule:
    """A compiled eligibility rule: `names` are the variables it reads."""

    text: str
    names: frozenset[str]
    tree: ast.Expression = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    @property
    def monotone(self) -> bool:
        """True when it tests no missing value (no isnull, notnull, coalesce): then a result that
        is false with some inputs missing is false whatever their values (three-valued logic), so
        a caller may decide it before computing them."""
        tests = {"isnull", "notnull", "coalesce"}
        return not any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in tests
            for n in ast.walk(self.tree)
        )

    @property
    def request_names(self) -> frozenset[str]:
        """The names it reads from the request (channel, context keys)."""
        return frozenset(n for n in self.names if is_request_name(n))

    def evaluate(self, namespace: Mapping[str, object] | pd.DataFrame) -> NDArray[np.bool_] | bool:
        """Evaluate on one customer (scalars: returns bool) or many (arrays/Series: bool array).

        A rule that reads no array returns a plain bool; broadcast it to the batch if needed.
        """
        self._require(namespace)
        evaluator = _evaluator()
        evaluator.names = {name: _as_array(namespace[name]) for name in self.names}
        try:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                result = _truth(evaluator.eval(self.text, previously_parsed=self.tree.body))
        except (TypeError, ValueError) as exc:
            raise RuleError(f"cannot evaluate {self.text!r} ({exc})") from exc
        finally:
            evaluator.names = {}
        eligible = np.asarray(result == 1.0)
        return bool(eligible) if eligible.ndim == 0 else eligible

    def _require(self, namespace: Mapping[str, object] | pd.DataFrame) -> None:
        missing = sorted(name for name in self.names if name not in namespace)
        if not missing:
            return
        close = difflib.get_close_matches(missing[0], [str(k) for k in namespace], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RuleError(f"rule {self.text!r} reads unknown name '{missing[0]}'{hint}")


def compile_rule(text: str) -> Rule:
    """Parse and check a rule once; raise RuleError with the reason if it is malformed or unsafe."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("empty rule")
    if len(text) > MAX_RULE_LENGTH:
        raise RuleError(f"rule is longer than {MAX_RULE_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"cannot parse {text!r} ({exc.msg})") from None
    try:
        _check(tree)
    except RuleError as exc:
        raise RuleError(f"cannot use {text!r}: {exc}") from None
    return Rule(text=text, names=_names(tree), tree=tree)
