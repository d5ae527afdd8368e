"""Guard for issue 11's "no function in volume_cli/ over 80 lines".

A long function is one that does several jobs; splitting it names the jobs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import volume_cli

MAX_LINES = 80
PACKAGE = Path(volume_cli.__file__).parent


def long_functions(root: Path, *, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function or method longer than ``limit`` lines, decorators excluded."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_guard_sees_a_long_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (package / "long.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n", encoding="utf-8")
    assert long_functions(package) == [f"pkg/long.py:5 long ({MAX_LINES + 1} lines)"]


def test_no_function_in_volume_cli_is_over_80_lines() -> None:
    assert long_functions(PACKAGE) == []


# Names that are one idea per engine or one convention per CLI module, not two ideas sharing a name.
SHARED_BY_DESIGN = {
    "gc",  # deps.gc.gc and models.gc.gc: the same verb in each engine
    "register",  # each cli/commands module registers its commands
    "check_command",  # cli/commands: one function per `<group> <verb>` command
    "list_command",
    "rm_command",
    "run",  # runner.run (subprocesses) and cli.main.run (the entry point)
}


def duplicate_public_names(root: Path) -> dict[str, list[str]]:
    """Public top-level functions and classes defined in more than one module, with the modules."""
    defined: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith(
                "_"
            ):
                defined.setdefault(node.name, []).append(str(path.relative_to(root.parent)))
    return {name: paths for name, paths in defined.items() if len(paths) > 1 and name not in SHARED_BY_DESIGN}


def test_one_name_per_idea() -> None:
    # Two read_manifest (deps entries, models) and two CheckReport (deps, projects) cost a newcomer time.
    assert duplicate_public_names(PACKAGE) == {}


# Modules run as programs (``python -m``), not imported.
PROGRAMS = {"volume_cli.__main__", "volume_cli.cli.reference", "volume_cli.store.schemas"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unused_modules(root: Path) -> list[str]:
    """Modules nothing imports, counting a package's re-export only when someone imports the re-exported name."""
    imported: set[str] = set()
    reexports: dict[str, set[str]] = {}  # module -> the package-level names it provides
    for path in sorted(root.rglob("*.py")):
        package = _module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {f"{node.module}.{alias.name}" for alias in node.names}
                if path.name == "__init__.py":
                    reexports.setdefault(node.module, set()).update(f"{package}.{a.name}" for a in node.names)
                else:
                    imported |= {node.module, *names}
            elif isinstance(node, ast.Import) and path.name != "__init__.py":
                imported |= {alias.name for alias in node.names}
            elif (
                isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("volume_cli.")
            ):
                imported.add(node.value)  # imported by name when first needed (cli/main.py's command table)
    unused = []
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        if path.name == "__init__.py" or name in PROGRAMS or name in imported:
            continue
        if not reexports.get(name, set()) & imported:
            unused.append(name)
    return unused


def test_no_dead_module() -> None:
    # models/environment.py was such a module, and it disagreed with runtime.cache_variables.
    assert unused_modules(PACKAGE) == []


def test_deps_reads_its_records_through_typed_accessors() -> None:
    # As models/manifest.py does: one function per record, not read_document(path_fn(...), Cls) at each caller.
    untyped = re.compile(r"read_document\((generation_record_path|lock_info_path)\(")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "deps" / "documents.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if untyped.search(line)
    ]
    assert found == []


def test_tests_share_their_helpers_through_a_plain_module() -> None:
    # Helpers imported from conftest modules, found through a sys.path hack, were written twice and
    # drifted apart; tests/helpers.py is the one place, conftest files hold fixtures only.
    tests = PACKAGE.parent / "tests"
    pattern = re.compile(
        r"^\s*from (tests\.)?(\w+\.)*conftest import|^sys\.path\.insert\(0, str\(Path\(__file__\)", re.M
    )
    found = [
        str(path.relative_to(tests))
        for path in sorted(tests.rglob("*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
