"""The house's layout holds: packages in flow order with every import pointing down, at
most 10 modules directly under bench/, and the framework loading method plugins in one
place (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, imported_modules

#: each framework package and the packages it may import (besides itself).
MAY_IMPORT = {
    "core": set(),
    "data": {"core"},
    "tracking": {"core"},
    "engine": {"core", "data", "tracking"},
    "experiment": {"core", "data", "tracking", "engine"},
    "report": {"core", "engine"},
    "tune": {"core", "data", "tracking", "engine", "experiment", "report"},
    "studies": {"core", "data", "tracking", "engine", "experiment", "report"},
    "launch": {"core", "data", "tracking", "engine", "experiment", "report", "tune"},
}
#: the one framework module that imports the plugin package; paper studies read the
#: CKA plugin's readings (bench/studies/cka is that paper's own code, not the framework).
PLUGIN_LOADER = "bench/experiment/plugins.py"


def framework_files() -> list[Path]:
    return sorted((ROOT / "bench").rglob("*.py"))


def test_every_import_points_down_the_flow():
    wrong = {}
    for path in framework_files():
        parts = path.relative_to(ROOT / "bench").parts
        if len(parts) == 1:  # cli, __main__: the top floor imports anything
            continue
        allowed = MAY_IMPORT[parts[0]] | {parts[0]}
        bad = {
            name
            for name in imported_modules(path)
            if name.startswith("bench.") and name.split(".")[1] not in allowed
        }
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}


def test_the_framework_loads_plugins_in_one_place():
    importers = {
        str(path.relative_to(ROOT))
        for path in framework_files()
        if any(n == "methods" or n.startswith("methods.") for n in imported_modules(path))
    }
    assert PLUGIN_LOADER in importers
    assert {p for p in importers if not p.startswith("bench/studies/")} == {PLUGIN_LOADER}


def test_at_most_ten_modules_directly_under_bench():
    modules = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert len(modules) <= 10, modules
    packages = {p.name for p in (ROOT / "bench").iterdir() if (p / "__init__.py").is_file()}
    assert set(MAY_IMPORT) <= packages


def test_the_layout_check_sees_an_import_up_the_flow(tmp_path: Path):
    probe = tmp_path / "m.py"
    probe.write_text("def f():\n    from bench.launch.suite import run_suite\n")
    assert "bench.launch.suite" in imported_modules(probe)
    assert "launch" not in MAY_IMPORT["engine"]


def test_no_module_imports_its_own_package_face():
    """A package whose ``__init__`` hands on its modules' names closes a circle with any of
    its modules that imports the package itself (``from bench.report import stats`` inside
    bench/report): such modules import their siblings by their own names."""
    wrong = {}
    for path in framework_files():
        if path.name == "__init__.py" or path.parent == ROOT / "bench":
            continue
        face = ".".join(path.parent.relative_to(ROOT).parts)
        init = imported_modules(path.parent / "__init__.py")
        hands_on = any(name.startswith(face + ".") for name in init)
        if hands_on and face in imported_modules(path):
            wrong[str(path.relative_to(ROOT))] = face
    assert wrong == {}
