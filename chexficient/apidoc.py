"""The API reference page, generated from the source: every public module, function, class
and method of the library packages with its signature and docstring (nothing is imported).

    python -m chexficient.apidoc > docs/api.md

`tests/test_docstrings.py` fails when a public callable has no docstring or when
docs/api.md differs from what this prints.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curation", "pretrain", "downstream")
MODULES = ("chexficient/inference.py",)
"""Single modules documented (and held to docstrings) when they exist."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One documented object: where it is defined, its kind, signature and docstring."""

    module: str  # dotted module name
    name: str  # "" for the module itself, "f", "Class" or "Class.method"
    kind: str  # "module" | "function" | "class" | "method" | "property"
    signature: str
    doc: str | None
    path: str
    line: int

    @property
    def title(self) -> str:
        """The dotted name: module, or module.object."""
        return f"{self.module}.{self.name}" if self.name else self.module


def module_files(root: Path = ROOT) -> list[Path]:
    """The public modules' files: every .py of PACKAGES (not `_private.py`) and MODULES present."""
    files = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))
             if not p.name.startswith("_") or p.name == "__init__.py"]
    return files + [root / m for m in MODULES if (root / m).exists()]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _arguments(args: ast.arguments, drop_first: bool) -> str:
    """The argument list as written, without `self` / `cls` for methods."""
    if drop_first:
        args = copy.copy(args)
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        else:
            args.args = args.args[1:]
    return ast.unparse(args)


def _function_signature(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> str:
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"({_arguments(node.args, method and not is_static)}){returns}"


def _class_signature(node: ast.ClassDef) -> str:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return f"({_arguments(item.args, True)})"
    fields = [ast.unparse(item.target) + (f"={ast.unparse(item.value)}" if item.value else "")
              for item in node.body
              if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
              and not item.target.id.startswith("_")]
    return f"({', '.join(fields)})"


def _decorated_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id in ("property", "cached_property") or
               isinstance(d, ast.Attribute) and d.attr == "cached_property"
               for d in node.decorator_list)


def public_entries(path: Path, root: Path = ROOT) -> list[Entry]:
    """The module and its public top-level functions and classes, and their public methods."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module, where = _module_name(path, root), str(path.relative_to(root))
    out = [Entry(module, "", "module", "", ast.get_docstring(tree), where, 1)]
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and not node.name.startswith("_"):
            out.append(Entry(module, node.name, "function", _function_signature(node, False),
                             ast.get_docstring(node), where, node.lineno))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out.append(Entry(module, node.name, "class", _class_signature(node),
                             ast.get_docstring(node), where, node.lineno))
            for item in node.body:
                if isinstance(item, functions) and not item.name.startswith("_"):
                    kind = "property" if _decorated_property(item) else "method"
                    signature = "" if kind == "property" else _function_signature(item, True)
                    out.append(Entry(module, f"{node.name}.{item.name}", kind, signature,
                                     ast.get_docstring(item), where, item.lineno))
    return out


def entries(root: Path = ROOT) -> list[Entry]:
    """Every documented object of the public modules, in file and then source order."""
    return [e for path in module_files(root) for e in public_entries(path, root)]


def missing_docstrings(root: Path = ROOT) -> list[str]:
    """`path:line: name (kind)` of every public object without a docstring."""
    return [f"{e.path}:{e.line}: {e.title} ({e.kind})" for e in entries(root) if not e.doc]


def _indented(text: str, indent: str = "  ") -> str:
    return "\n".join(indent + line if line.strip() else "" for line in text.splitlines())


def render(root: Path = ROOT) -> str:
    """docs/api.md: one section per package, one block per module, an item per object."""
    names = [f"`{p}/`" for p in PACKAGES] + [f"`{m}`" for m in MODULES if (root / m).exists()]
    lines = ["# API reference", "",
             f"Every public module, function, class and method of {', '.join(names[:-1])} and",
             f"{names[-1]}, with its signature and docstring. Generated from the source by",
             "`python -m chexficient.apidoc > docs/api.md`; `tests/test_docstrings.py` fails when",
             "this page is out of date. The design these parts fit into is",
             "[architecture.md](architecture.md).", ""]
    package = None
    for e in entries(root):
        top = e.module.split(".")[0] if e.module.split(".")[0] in PACKAGES else e.module
        if top != package:
            package = top
            lines += [f"## {package}", ""]
        if e.kind == "module":
            lines += [f"### {e.module}", "", f"`{e.path}`", ""]
            if e.doc:
                lines += [e.doc, ""]
            continue
        label = {"method": "", "function": "", "property": " (property)", "class": " (class)"}
        lines += [f"- `{e.name}{e.signature}`{label[e.kind]}", ""]
        if e.doc:
            lines += [_indented(e.doc), ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Prints the API page (redirect it to docs/api.md)."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
