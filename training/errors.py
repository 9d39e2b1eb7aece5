"""User-facing errors: the command line prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


class NextbestError(Exception):
    """Base class for errors caused by the user's input (data, configuration, arguments)."""


class EstimatorInputError(NextbestError, ValueError):
    """Input an estimator cannot take (a matrix of another width than it was fitted on, labels
    that are not 0/1): a NextbestError for the command line, a ValueError for scikit-learn."""


class ContractError(NextbestError):
    """A data set breaks the input contract of docs/data.md.

    The message always names the file, the column and an example row, so the user can find it.
    """

    def __init__(self, file: str, column: str | None, problem: str, example: object = None):
        self.file, self.column, self.problem, self.example = file, column, problem, example
        where = f"{file}" + (f", column '{column}'" if column else "")
        tail = f" (example row: {example})" if example is not None else ""
        super().__init__(f"{where}: {problem}{tail}")


class ConfigError(NextbestError):
    """The YAML configuration or action catalog is invalid; the message names the file and field."""
