"""The core imports without the optional packages: matplotlib (figures) and gguf (GGUF files) load on use."""

import subprocess
import sys

import pytest

OPTIONAL = ("matplotlib", "gguf")


@pytest.mark.parametrize("module", ["jaxneurons", "jaxneurons.pipeline.run", "jaxneurons.analysis"])
def test_import_leaves_optional_packages_alone(module):
    code = (f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(OPTIONAL)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} imported {out.stdout.strip()}"
