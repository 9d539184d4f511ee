"""The layer rule, read from the source: cli -> run -> stages -> domain -> pure core.

A *stage* (ingest, train, predict, export, validate, report) never imports another stage, and
nothing below the stages imports one: shared helpers live below them. Only the command line
(``dsm.cli``), the one-command job (``dsm.run``) and the test support (``dsm.testing``) sit
above and may import every stage. The pure core imports neither xgboost nor distributed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dsm

ROOT = Path(dsm.__file__).parent
STAGES = {"ingest": "dsm.ingest", "train": "dsm.models.train", "predict": "dsm.predict", "export": "dsm.export",
          "validate": "dsm.validate", "report": "dsm.report"}
ABOVE = ("dsm.cli", "dsm.run", "dsm.testing", "dsm.__main__")
PURE = ("dsm.grid", "dsm.metrics", "dsm.skill", "dsm.fusion", "dsm.calibration", "dsm.periods", "dsm.config")


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(name: str) -> str | None:
    return next((s for s, m in STAGES.items() if name == m or name.startswith(m + ".")), None)


def _imports(path: Path) -> set[str]:
    """Every module named by an import in ``path`` (``from a import b``: ``a``, and ``a.b`` where
    ``a`` is no stage, since ``b`` may be a module: ``from dsm import predict``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if _stage(node.module) is None:
                out.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in out if n == "dsm" or n.startswith("dsm.")}


def layer_violations(root: Path = ROOT) -> list[str]:
    """``"importer -> imported"`` for every import that breaks the layer rule."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        mod = _module(path, root)
        if mod.startswith(ABOVE):
            continue
        own = _stage(mod)
        for name in sorted(_imports(path)):
            other = _stage(name)
            if other is not None and other != own:
                where = f"stage {own}" if own else "below the stages"
                bad.append(f"{mod} ({where}) -> {name} (stage {other})")
    return bad


def test_no_stage_imports_another_and_nothing_below_imports_a_stage():
    assert layer_violations() == []


def test_the_rule_catches_a_sideways_and_an_upward_import(tmp_path):
    pkg = tmp_path / "dsm"
    (pkg / "models").mkdir(parents=True)
    (pkg / "export.py").write_text("from dsm.predict import predict\n")
    (pkg / "grid.py").write_text("import dsm.validate\n")
    (pkg / "run.py").write_text("from dsm import predict, export\n")  # above the stages: allowed
    (pkg / "models" / "train.py").write_text("from dsm.models import store\n")
    assert layer_violations(pkg) == ["dsm.export (stage export) -> dsm.predict (stage predict)",
                                     "dsm.grid (below the stages) -> dsm.validate (stage validate)"]


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_neither_xgboost_nor_distributed(module):
    code = (f"import sys, {module}; heavy = sorted(m for m in ('xgboost', 'distributed', 'dask_ml') if m in sys.modules); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
