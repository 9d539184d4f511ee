"""The layer rule, read from the source: cli -> run -> stages -> domain -> pure core.

A *stage* is a module of ``dsm.stages`` (ingest, train, predict, export, validate, report). No
stage imports another, and nothing below the stages imports one: shared helpers live below them.
Only the command line (``dsm.cli``), the one-command job (``dsm.chain``) and the test support
(``dsm.testing``) sit above and may import every stage; the package's public names
(``dsm.predict`` ...) reach the stages lazily, by name. The pure core imports neither xgboost nor
distributed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dsm

ROOT = Path(dsm.__file__).parent
STAGE_PACKAGE = "dsm.stages"
ABOVE = ("dsm.cli", "dsm.chain", "dsm.testing", "dsm.__main__")
PURE = ("dsm.grid", "dsm.cell_stats", "dsm.metrics", "dsm.skill", "dsm.fusion", "dsm.calibration", "dsm.periods", "dsm.config")


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(name: str) -> str | None:
    """The stage ``name`` belongs to (``dsm.stages.predict`` -> ``predict``), or None."""
    parts = name.split(".")
    return parts[2] if name.startswith(STAGE_PACKAGE + ".") and len(parts) > 2 else None


def _imports(path: Path) -> set[str]:
    """Every module named by an import in ``path`` (``from a import b``: ``a``, and ``a.b`` where
    ``a`` is no stage, since ``b`` may be a module: ``from dsm.stages import predict``; a public
    name of ``dsm`` counts as the module it comes from)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "dsm":  # the public names reach their modules: from dsm import predict
                out.update(dsm._PUBLIC[a.name][0] for a in node.names if a.name in dsm._PUBLIC)
            if _stage(node.module) is None:
                out.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in out if n == "dsm" or n.startswith("dsm.")}


def layer_violations(root: Path = ROOT) -> list[str]:
    """``"importer -> imported"`` for every import that breaks the layer rule."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        mod = _module(path, root)
        if mod == "dsm" or mod.startswith(ABOVE):  # the package's public names sit above too
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
    (pkg / "stages").mkdir(parents=True)
    (pkg / "stages" / "export.py").write_text("from dsm.stages.predict import predict\n")
    (pkg / "grid.py").write_text("from dsm.stages import validate\n")
    (pkg / "chain.py").write_text("from dsm.stages import predict, export\n")  # above the stages: allowed
    (pkg / "stages" / "train.py").write_text("from dsm.models import store\n")
    (pkg / "fusion.py").write_text("from dsm import Config, export\n")  # a public name that is a stage
    assert layer_violations(pkg) == ["dsm.fusion (below the stages) -> dsm.stages.export (stage export)",
                                     "dsm.grid (below the stages) -> dsm.stages.validate (stage validate)",
                                     "dsm.stages.export (stage export) -> dsm.stages.predict (stage predict)"]


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_neither_xgboost_nor_distributed(module):
    code = (f"import sys, {module}; heavy = sorted(m for m in ('xgboost', 'distributed', 'dask_ml') if m in sys.modules); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_public_names_are_the_stage_functions_and_no_module_shadows_one():
    import dsm.chain
    import dsm.stages.predict
    import dsm.stages.train

    assert dsm.predict is dsm.stages.predict.predict and dsm.train is dsm.stages.train.train
    assert dsm.run is dsm.chain.run
    assert sorted(dsm.__all__) == sorted(["__version__", *dsm._PUBLIC])
    assert all(callable(getattr(dsm, name)) for name in dsm._PUBLIC)
    assert set(dsm._PUBLIC) <= set(dir(dsm))
    # a submodule named like a public name would replace it on dsm as soon as it is imported
    shadowing = [name for name in dsm._PUBLIC if (ROOT / f"{name}.py").exists() or (ROOT / name).is_dir()]
    assert shadowing == []
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dsm.nothing  # noqa: B018


def test_importing_dsm_loads_no_stage():
    code = "import sys, dsm; print(','.join(sorted(m for m in sys.modules if m.startswith(('dsm.', 'xgboost')))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
