"""The core imports without the optional packages: matplotlib (figures) and gguf (GGUF files) load on use."""

import subprocess
import sys

import pytest

OPTIONAL = ("matplotlib", "gguf")


@pytest.mark.parametrize("module", ["jaxneurons", "jaxneurons.pipeline.sharing", "jaxneurons.analysis"])
def test_import_leaves_optional_packages_alone(module):
    code = (f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(OPTIONAL)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} imported {out.stdout.strip()}"


def test_distributed_imports_nothing_of_the_pipeline():
    """distributed.py is the layer below pipeline/ (the run-state merge lives in pipeline/merge.py)."""
    import ast
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxneurons", "distributed.py")
    tree = ast.parse(open(path).read())
    names = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    names += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [n for n in names if n and n.startswith("jaxneurons.pipeline")], names
