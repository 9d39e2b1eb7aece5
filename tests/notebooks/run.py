"""Execute a notebook of notebooks/ with nbclient, as a reader would run it top to bottom.

The committed notebooks carry the outputs of this run: with NEXTBEST_RENDER_NOTEBOOKS set to a
folder (`make notebooks` sets notebooks/), each executed notebook is written there, whole or not
at all, without per-cell timings so that a re-render changes only what the outputs changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbclient
import nbformat

from training.atomic import atomic_file

RENDER = "NEXTBEST_RENDER_NOTEBOOKS"


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set for the block (the kernel inherits it), restored afterwards."""
    old = os.environ.copy()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def execute(path: Path, env: dict[str, str], timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell of `path` afresh (committed outputs cleared first) in a kernel seeing `env`;
    a cell error fails here, naming the cell. Written to $NEXTBEST_RENDER_NOTEBOOKS when set."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with environment(env):
        nbclient.NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", record_timing=False
        ).execute()
    target = os.environ.get(RENDER)
    if target:
        with atomic_file(Path(target) / path.name) as tmp:
            nbformat.write(notebook, tmp)
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG plots the run displayed."""
    return sum("image/png" in o.get("data", {}) for o in outputs(notebook))
