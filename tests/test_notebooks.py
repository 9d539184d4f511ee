"""The notebooks run top to bottom (jupytext percent files executed with a real kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # make test-fast leaves these out

LOOK_AT_A_RUN = ("03_products", "04_validation")  # read CONFIG_PATH from DSM_NOTEBOOK_CONFIG
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch, request):
    jupytext = pytest.importorskip("jupytext")
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures inline
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders go with the test's
    if path.stem in LOOK_AT_A_RUN:  # the products of `dsm demo` (their own-build path is the demo's)
        monkeypatch.setenv("DSM_NOTEBOOK_CONFIG", str(request.getfixturevalue("tiny_demo").work / "config.yaml"))
    nb = jupytext.read(path)
    NotebookClient(nb, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # figures were drawn inline
    if "mkdtemp(" in path.read_text(encoding="utf-8"):  # its temporary folder is left in the test's, not in /tmp
        assert any(tmp_path.glob("dsm-*")), "the notebook's temporary folder is not under TMPDIR"
