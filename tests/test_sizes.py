"""No module of the toolbox over 500 lines, no class over 300: the packages stay readable
(a module or class past that size is split along its seams)."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("open_l2o_tf", "model_based", "model_free", "run")
MAX_MODULE, MAX_CLASS = 500, 300
SKIP = set()


def _modules():
    for package in PACKAGES:
        for path in sorted(glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True)):
            rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
            if rel not in SKIP and os.path.exists(path):
                yield rel, path


def test_no_module_over_500_lines_and_no_class_over_300():
    too_long = []
    for rel, path in _modules():
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        lines = len(source.splitlines())
        if lines > MAX_MODULE:
            too_long.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS:
                    too_long.append(f"{rel}: class {node.name} {length} lines")
    assert not too_long, too_long
    assert sum(1 for _ in _modules()) > 50      # the packages were found
