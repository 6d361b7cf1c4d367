"""docs/quickstart.ipynb executes without an error and shows what its text says (so it cannot rot).

It runs through docs/run_quickstart.py's `execute`: a fresh python3 kernel (nbclient) that imports jaxneurons from
this checkout, in a temporary folder; the notebook file is not changed (that script's main re-saves it). About
30-60 s on 2 CPU cores.
"""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed():
    from jaxneurons.loading import zoo

    try:
        zoo.resolve_zoo("smollm2-135m")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(f"zoo model smollm2-135m not installed: {e}")
    spec = importlib.util.spec_from_file_location("run_quickstart", REPO / "docs" / "run_quickstart.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner.execute(NOTEBOOK)  # raises CellExecutionError, naming the cell, on the first error


def _cell(nb, source_start: str):
    """The code cell whose source starts with source_start."""
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    assert len(cells) == 1, f"expected one code cell starting with {source_start!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    """Every text output of a cell (streams, text/plain, text/html), joined."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts += [out.data.get("text/plain", ""), out.data.get("text/html", "")]
    return "\n".join(parts)


def test_no_cell_errors_and_stderr_only_the_librarys_warnings(executed):
    """No error, and nothing on stderr but jaxneurons' own logged warnings (e.g. a control the pool cannot
    match on 4 examples, which the result's display repeats)."""
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        kinds = [out.output_type for out in cell.outputs]
        assert "error" not in kinds, cell.source
        stderr = [line for out in cell.outputs if out.output_type == "stream" and out.name == "stderr"
                  for line in out.text.splitlines() if line.strip()]
        assert all(line.startswith("WARNING:jaxneurons.") for line in stderr), (cell.source, stderr)


def test_the_model_and_the_sharing_summary(executed):
    assert "30 layers, 1536 FFN neurons per layer" in _text(_cell(executed, "%matplotlib inline"))
    summary = _text(_cell(executed, "result = jn.sharing("))
    assert "SharingResult(model='smollm2-135m', task='builtin_nli', languages='en, de', n=8" in summary
    assert "all-shared" in summary and "Accuracy: en" in summary


def test_the_figures_are_inline_pngs(executed):
    for start in ("result.plot()", "jn.plot_logit_lens("):
        outputs = [o for o in _cell(executed, start).outputs if o.output_type == "execute_result"]
        assert len(outputs) == 1, start
        assert "image/png" in outputs[0].data and len(outputs[0].data["image/png"]) > 1000, start
        assert outputs[0].data["text/plain"].startswith("<Figure"), start


def test_the_tables(executed):
    head = _text(_cell(executed, "result.to_pandas().head()"))
    header = head.splitlines()[0].split()
    assert header == ["threshold", "layer", "category", "value", "ci_low", "ci_high"]
    assert "all_shared" in head
    attribution = _text(_cell(executed, "table = attr.to_pandas()"))
    assert "contribution" in attribution and "effective" in attribution and "null" in attribution


def test_logit_lens_and_own_data(executed):
    lens = _text(_cell(executed, "prompts = {"))
    assert lens.startswith("en [(24,") and "(29, ' Paris'" in lens  # the model's own top token at the last layer
    own = _text(_cell(executed, "custom = jn.make_examples("))
    assert "task='custom', languages='en, de', n=4" in own
    reloaded = _text(_cell(executed, "import os, tempfile"))
    assert "sharing.json" in reloaded and "examples.npz" in reloaded and "'en': 1.0" in reloaded
