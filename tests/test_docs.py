"""Every ```python block of docs/*.md runs: each in a fresh interpreter, as a reader would
paste it (a block sets its own environment, e.g. XLA_FLAGS, before importing JAX)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks():
    """(id, code) of every python block, id = file:line."""
    out = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(pytest.param(m.group(1), id=f"{path.name}:{line}"))
    return out


def test_docs_have_python_blocks():
    assert len(blocks()) >= 5


@pytest.mark.parametrize("code", blocks())
def test_doc_block_runs(code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(DOCS.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    result = subprocess.run([sys.executable, "-c", code], cwd=DOCS.parent, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"block failed:\n{result.stdout}\n{result.stderr[-4000:]}"
