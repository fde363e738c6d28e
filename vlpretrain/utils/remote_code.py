"""Flat copies of the package's modules for transformers' remote-code loader.

transformers' ``trust_remote_code`` loader only follows same-folder imports of the form
``from .name import x`` and copies files by basename. The package itself is nested
(``configuration/``, ``modeling/``, ``processing/``), so saving writes a *flat* copy of exactly the
modules an object needs: ``vlpretrain/modeling/lxmert.py`` becomes ``modeling_lxmert.py`` and every
package-internal relative import in it is rewritten to point at the flat sibling. A module that was
itself loaded as remote code is already flat and is copied under its own name, so a model loaded
with ``trust_remote_code=True`` can be saved and loaded again.

Rules the package's own modules follow so that this works (checked here, with a clear error):
internal imports are relative and name a module (never ``from . import x`` or a package
``__init__``), and no two exported modules share a flat name.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .folders import atomic_write_text

PACKAGE_NAME = "vlpretrain"

# The pattern transformers uses to find relative imports (dynamic_module_utils.get_relative_imports).
_TRANSFORMERS_RELATIVE_IMPORT = re.compile(r"^\s*(?:from\s+\.(\S+)\s+import|import\s+\.(\S+)\s*$)", re.MULTILINE)


def flat_module_name(module_name: str) -> str:
    """Return the file stem a module gets in a flat export (``vlpretrain.modeling.lxmert`` -> ``modeling_lxmert``)."""
    if module_name.startswith(PACKAGE_NAME + "."):
        return module_name[len(PACKAGE_NAME) + 1 :].replace(".", "_")
    return module_name.rsplit(".", 1)[-1]


def _module_source(module: ModuleType) -> tuple[str, str]:
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        raise ValueError(f"module {module.__name__!r} has no Python source file to export")
    return path, Path(path).read_text(encoding="utf-8")


def _relative_imports(module: ModuleType, source: str) -> list[tuple[ast.ImportFrom, str]]:
    """Return each relative ``from ... import`` node of ``module`` with the absolute module it names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE_NAME or alias.name.startswith(PACKAGE_NAME + "."):
                    raise ValueError(
                        f"{module.__name__}: absolute import of {alias.name!r}; package-internal imports must be "
                        "relative so the module can be exported as remote code"
                    )
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if node.module and (node.module == PACKAGE_NAME or node.module.startswith(PACKAGE_NAME + ".")):
                raise ValueError(
                    f"{module.__name__}: absolute import 'from {node.module} import ...'; package-internal imports "
                    "must be relative so the module can be exported as remote code"
                )
            continue
        if not node.module:
            raise ValueError(
                f"{module.__name__}: 'from {'.' * node.level} import ...' cannot be exported as remote code; "
                "import names from a module instead"
            )
        target = importlib.util.resolve_name("." * node.level + node.module, module.__package__)
        target_module = sys.modules.get(target) or importlib.import_module(target)
        if hasattr(target_module, "__path__"):
            raise ValueError(
                f"{module.__name__}: 'from {'.' * node.level}{node.module} import ...' imports a package; "
                "import from the module that defines the names"
            )
        found.append((node, target))
    return found


def module_closure(module_names: Iterable[str]) -> dict[str, str]:
    """Map every module needed by ``module_names`` (following relative imports) to its flat name.

    Two modules may share a flat name only when their sources are identical: transformers loads a local
    folder's config and model code into different dynamic-module folders, so a re-saved remote-code model
    meets the same ``configuration_x`` twice.
    """
    closure: dict[str, str] = {}
    sources: dict[str, tuple[str, str]] = {}
    pending = list(module_names)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        module = sys.modules.get(name) or importlib.import_module(name)
        _, source = _module_source(module)
        flat = flat_module_name(name)
        if flat in sources:
            first_name, first_source = sources[flat]
            if first_source != source:
                raise ValueError(f"modules {first_name!r} and {name!r} would both be exported as {flat}.py")
        else:
            sources[flat] = (name, source)
        closure[name] = flat
        pending.extend(target for _, target in _relative_imports(module, source))
    return closure


def flatten_source(module_name: str, closure: dict[str, str]) -> str:
    """Return the source of ``module_name`` with its relative imports pointing at flat siblings."""
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    _, source = _module_source(module)
    lines = source.splitlines(keepends=True)
    imports = sorted(_relative_imports(module, source), key=lambda item: item[0].lineno, reverse=True)
    for node, target in imports:
        names = ", ".join(alias.name if alias.asname is None else f"{alias.name} as {alias.asname}" for alias in node.names)
        indent = " " * node.col_offset
        lines[node.lineno - 1 : node.end_lineno] = [f"{indent}from .{closure[target]} import {names}\n"]
    flat = "".join(lines)
    flat_names = set(closure.values())
    for match in _TRANSFORMERS_RELATIVE_IMPORT.finditer(flat):
        referenced = (match.group(1) or match.group(2)).split(".")[0]
        if referenced not in flat_names:
            raise ValueError(
                f"{module_name}: the line {match.group(0).strip()!r} looks like a relative import to transformers' "
                "remote-code loader but names no exported module (rephrase it, e.g. in a docstring)"
            )
    return flat


def write_flat_modules(module_names: Iterable[str], folder: str | os.PathLike) -> list[str]:
    """Write the flat copy of ``module_names`` and their dependencies into ``folder``; return the file names."""
    closure = module_closure(module_names)
    folder = Path(folder)
    written = []
    for name, flat in sorted(closure.items(), key=lambda item: (item[1], item[0])):
        if f"{flat}.py" in written:
            continue
        atomic_write_text(folder / f"{flat}.py", flatten_source(name, closure))
        written.append(f"{flat}.py")
    return written


def auto_map_reference(cls: type) -> str:
    """Return the ``auto_map`` value (``flat_module.ClassName``) for a class."""
    return f"{flat_module_name(cls.__module__)}.{cls.__name__}"
