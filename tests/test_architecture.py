"""The layering of the packages and their public boundaries, read from the source code:
dependencies point downward only (dense_snns <- sparse_snns <- snns_as_gnn <- snn_cli), and no module
uses another module's private names (``_name``) or another package's private modules."""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("dense_snns", "sparse_snns", "snns_as_gnn", "snn_cli")
#: Names that start with an underscore but are documented public API of their module.
DOCUMENTED = {("os", "_exit")}  # exit without interpreter teardown (Python's os module docs)
#: What each package may import from the others (the command line sits above them all).
ALLOWED = {
    "dense_snns": set(),
    "sparse_snns": {"dense_snns"},
    "snns_as_gnn": {"dense_snns", "sparse_snns"},
    "snn_cli": {"dense_snns", "sparse_snns", "snns_as_gnn"},
}


def python_files(*folders):
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def module_name(path):
    relative = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    return ".".join(relative[:-1] if relative[-1] == "__init__" else relative), relative[-1] == "__init__"


def absolute(module, is_package, node):
    """The absolute module name of an ImportFrom node."""
    if node.level == 0:
        return node.module
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


#: The public API of NamedTuples (SparseSpikes, the models' State and Params).
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make"}


def private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in NAMEDTUPLE_API


def violations(path):
    module, is_package = module_name(path)
    package = module.split(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found, imported_modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, alias.asname or alias.name.split(".")[0]) for alias in node.names]
            imported_modules.update(bound for _, bound in targets)
            names = [(target, None) for target, _ in targets]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, is_package, node)
            names = [(source, alias.name) for alias in node.names]
            imported_modules.update(alias.asname or alias.name for alias in node.names)
        else:
            continue
        for source, name in names:
            top = source.split(".")[0]
            if os.path.exists(os.path.join(os.path.dirname(path), top + ".py")):
                top = package  # a script's module next to it (examples/_common.py)
            if top in PACKAGES and top != package and package in PACKAGES and top not in ALLOWED[package]:
                found.append(f"line {node.lineno}: {package} imports {source} (dependencies point downward)")
            if top != package and any(private(part) for part in source.split(".")):
                found.append(f"line {node.lineno}: imports the private module {source} of another package")
            if name is not None and private(name):
                found.append(f"line {node.lineno}: imports the private name {name} from {source}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and private(node.attr)
            and (node.value.id, node.attr) not in DOCUMENTED
        ):
            found.append(f"line {node.lineno}: uses {node.value.id}.{node.attr}, a private name of another module")
    return found


SOURCES = list(python_files(*PACKAGES, "examples", "benchmarks"))


@pytest.mark.parametrize("path", SOURCES, ids=[os.path.relpath(p, ROOT) for p in SOURCES])
def test_no_private_imports_and_downward_dependencies(path):
    assert violations(path) == []


def test_the_checker_finds_violations(tmp_path, monkeypatch):
    package = tmp_path / "sparse_snns"
    package.mkdir()
    (package / "bad.py").write_text(
        "from dense_snns.fused import _broadcast_mask\n"
        "from dense_snns._compat import keras\n"
        "from snns_as_gnn import layer\n"
        "from dense_snns import fused\n"
        "x = fused._COMPILED\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    found = violations(str(package / "bad.py"))
    assert len(found) == 4, found
