"""Re-execute docs/quickstart.ipynb and save it with its outputs (what GitHub shows).

    python docs/run_quickstart.py            # needs nbclient, nbformat, ipykernel (the test extra) and smollm2-135m

The kernel imports jaxneurons from this checkout (PYTHONPATH is set to the repository root) and runs in a
temporary folder, so nothing but the notebook is written. tests/test_quickstart.py executes it the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "quickstart.ipynb"


def execute(path: str | os.PathLike = NOTEBOOK, timeout: int = 600):
    """The notebook at path, executed (kernel python3, jaxneurons from this checkout, cwd a temporary folder)."""
    import nbclient
    import nbformat

    nb = nbformat.read(os.fspath(path), as_version=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with tempfile.TemporaryDirectory() as cwd:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": cwd}})
        client.execute(env=env)
    return nb


def main(argv: list[str]) -> int:
    import nbformat

    path = Path(argv[1]) if len(argv) > 1 else NOTEBOOK
    nb = execute(path)
    nbformat.write(nb, os.fspath(path))
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
