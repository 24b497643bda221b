"""The public API is documented as the PyTerrier family documents it (Google style, rendered by Sphinx napoleon).

"Public" is every class and function exported by the package and its subpackages (their ``__all__``, or, without
one, what their ``__init__`` defines or imports from this package), the user-facing helper modules (collections,
explanations, the experiment runner, sweeps and plots), and the public methods and properties of every such class,
inherited ones included when this package defines them. Each of them must have a docstring; a function or method
with parameters (besides ``self`` / ``cls``) an ``Args:`` section naming every one; one that returns a value a
``Returns:`` (or ``Yields:``) section (properties excepted: their summary says what they are); every class and every
factory method of the model and index classes (a method of ``ColBERT``, ``ColBERTIndex`` or ``ShardedColBERTIndex``
returning a transformer, an indexer, a table or a figure, or named ``explain*``) an ``Example:`` section. A class's
constructor parameters may be described in the class docstring or in that of the ``__init__`` it uses.

Standard library only (``inspect`` and ``ast``): the docstrings are read from the source, so a dataclass's generated
``__doc__`` does not pass for one. The sections are the headings Sphinx napoleon reads (``Args:``, ``Returns:``,
``Yields:``, ``Raises:``, ``Example:``), each followed by an indented body.
"""
from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

PACKAGE = "pyterrier_lateint"
#: modules whose exports are the public API (``__all__``, else what they define or import from the package)
EXPORTING = [PACKAGE, f"{PACKAGE}.index", f"{PACKAGE}.sharded", f"{PACKAGE}.training", f"{PACKAGE}.doc2query",
             f"{PACKAGE}.models", f"{PACKAGE}.experiments"]
#: user-facing helper modules (imported by name in the README): every public function and class they define
HELPERS = [f"{PACKAGE}.data", f"{PACKAGE}.explain", f"{PACKAGE}.experiments.runner", f"{PACKAGE}.experiments.sweep",
           f"{PACKAGE}.experiments.plots"]
#: classes whose own public methods returning a transformer, an indexer, a table or a figure are factories
FACTORY_CLASSES = {"ColBERT", "ColBERTIndex", "ShardedColBERTIndex"}
FACTORY_RETURNS = re.compile(r"Transformer|Indexer|Retriever|Scorer|Loader|PRF|Encoder|DataFrame|Figure")
SECTION_RE = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
ENTRY_RE = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)\s*(\([^)]*\))?\s*:")


@dataclass
class Entry:
    """One public definition: where it is defined, its docstring (from the source) and what it must document."""

    name: str  # as the user reaches it, e.g. pyterrier_lateint.index.ColBERTIndex.retriever
    kind: str  # "class", "function", "method" or "property"
    doc: Optional[str]
    params: list[str] = field(default_factory=list)
    returns: bool = False
    needs_example: bool = False
    init_doc: Optional[str] = None  # the docstring of the __init__ a class uses (may hold its Args:)


@functools.lru_cache(maxsize=None)
def _module_tree(module_name: str) -> dict[str, ast.AST]:
    """Qualified name -> function or class node of one module's source."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    nodes: dict[str, ast.AST] = {}

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = f"{prefix}{node.name}"
                if isinstance(node, ast.ClassDef) or qualname not in nodes:  # a property's getter, not its setter
                    nodes[qualname] = node
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{qualname}.")
    visit(tree.body, "")
    return nodes


def _node(obj: Any) -> Optional[ast.AST]:
    obj = inspect.unwrap(obj)
    module = getattr(obj, "__module__", None)
    if not module or not module.startswith(PACKAGE):
        return None
    return _module_tree(module).get(obj.__qualname__)


def _returns_value(node: ast.AST) -> bool:
    """Whether a function's own body (not nested definitions) returns a value or yields."""
    todo = list(node.body)
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(n, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(n, ast.Return) and n.value is not None and not (
                isinstance(n.value, ast.Constant) and n.value.value is None):
            return True
        todo.extend(ast.iter_child_nodes(n))
    return False


def _function_entry(name: str, func: Any, kind: str, skip_first: bool) -> Entry:
    func = inspect.unwrap(func)
    node = _node(func)
    doc = ast.get_docstring(node) if node is not None else func.__doc__
    params: list[str] = []
    returns = False
    if kind != "property":
        sig = inspect.signature(func)
        items = list(sig.parameters.values())[1 if skip_first else 0:]
        params = [("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
                  for p in items]
        annotation = sig.return_annotation
        if annotation is inspect.Signature.empty:
            returns = node is not None and _returns_value(node)
        else:
            returns = annotation not in (None, "None", type(None))
    return Entry(name, kind, doc, params, returns)


def _constructor_owner(cls: type) -> type:
    """The class in ``cls``'s MRO that defines its constructor (``__init__`` or ``__new__``)."""
    return next((k for k in cls.__mro__ if "__init__" in vars(k) or "__new__" in vars(k)), object)


def _constructor_params(cls: type) -> list[str]:
    """The parameters of a class's constructor, when this package defines it (dataclasses and named tuples too)."""
    owner = _constructor_owner(cls)
    if not owner.__module__.startswith(PACKAGE) or getattr(cls, "_is_protocol", False):
        return []
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    return [("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
            for p in sig.parameters.values()]


def _members(cls: type, qualname: str, done: set[int]) -> list[Entry]:
    """Public methods and properties of ``cls``, inherited ones included when defined in this package (each
    definition once: under the first exported class that has it)."""
    entries, seen = [], set()
    for klass in cls.__mro__:
        if klass is object or not klass.__module__.startswith(PACKAGE):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in seen:
                continue
            seen.add(attr)
            if id(value) in done:
                continue
            done.add(id(value))
            name = f"{qualname}.{attr}"
            if isinstance(value, property):
                if value.fget is not None:
                    entries.append(_function_entry(name, value.fget, "property", True))
            elif isinstance(value, functools.cached_property):
                entries.append(_function_entry(name, value.func, "property", True))
            elif isinstance(value, staticmethod):
                entries.append(_function_entry(name, value.__func__, "method", False))
            elif isinstance(value, classmethod):
                entries.append(_function_entry(name, value.__func__, "method", True))
            elif inspect.isfunction(value):
                entry = _function_entry(name, value, "method", True)
                entry.needs_example = (klass is cls and cls.__name__ in FACTORY_CLASSES and (bool(
                    FACTORY_RETURNS.search(str(inspect.signature(value).return_annotation)))
                    or attr.startswith("explain")))
                entries.append(entry)
    return entries


def _public_objects() -> dict[str, Any]:
    """Exported name (``module.name``) -> class or function, each object once (under its first exporter)."""
    found: dict[str, Any] = {}
    ids = set()
    for module_name in EXPORTING + HELPERS:
        module = importlib.import_module(module_name)
        if module_name in EXPORTING and hasattr(module, "__all__"):
            names = list(module.__all__)
        else:
            names = [n for n, v in vars(module).items() if not n.startswith("_") and (
                module_name in EXPORTING or getattr(v, "__module__", None) == module_name)]
        for n in names:
            obj = getattr(module, n)
            if not (inspect.isclass(obj) or inspect.isfunction(inspect.unwrap(obj))):
                continue  # constants, type aliases, modules
            if not getattr(obj, "__module__", "").startswith(PACKAGE) or id(obj) in ids:
                continue
            ids.add(id(obj))
            found[f"{module_name}.{n}"] = obj
    return found


@functools.lru_cache(maxsize=None)
def public_api() -> tuple[Entry, ...]:
    """Every public definition, with what its docstring must hold."""
    entries, done = [], set()
    for name, obj in _public_objects().items():
        if inspect.isclass(obj):
            node = _node(obj)
            init = vars(_constructor_owner(obj)).get("__init__")  # its Args: may document the constructor
            init_node = _node(init) if inspect.isfunction(init) else None
            entries.append(Entry(name, "class", ast.get_docstring(node) if node is not None else None,
                                 _constructor_params(obj), needs_example=True,
                                 init_doc=ast.get_docstring(init_node) if init_node is not None else None))
            entries.extend(_members(obj, name, done))
        else:
            entries.append(_function_entry(name, obj, "function", False))
    return tuple(entries)


def sections(doc: Optional[str]) -> dict[str, list[str]]:
    """Google-style section heading -> the lines of its (indented) body."""
    found: dict[str, list[str]] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines):
        m = SECTION_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, body = len(m.group(1)), []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        found.setdefault(m.group(2), []).extend(body)
    return found


def arg_names(body: list[str]) -> set[str]:
    """The parameter names an ``Args:`` body describes (entries at its first indentation level)."""
    text = textwrap.dedent("\n".join(body)).splitlines()
    names = set()
    for line in text:
        if line and not line[0].isspace():
            m = ENTRY_RE.match(line)
            if m:
                names.add(m.group(1))
    return names


def problems(entry: Entry) -> list[str]:
    """What ``entry``'s docstring lacks."""
    if not entry.doc or not entry.doc.strip():
        return ["no docstring"]
    out = []
    found = sections(entry.doc)
    if entry.params:
        described = arg_names(found.get("Args", [])) | arg_names(sections(entry.init_doc).get("Args", []))
        if not ("Args" in found or "Args" in sections(entry.init_doc)):
            out.append("no Args: section")
        missing = [p for p in entry.params if p not in described and p.lstrip("*") not in described]
        if missing and "Args" in found | sections(entry.init_doc):
            out.append(f"Args: does not describe {', '.join(missing)}")
    if entry.returns and entry.kind != "class" and not ({"Returns", "Yields"} & set(found)):
        out.append("no Returns: or Yields: section")
    if entry.needs_example and "Example" not in found:
        out.append("no Example: section")
    return out


def test_public_api_is_found():
    names = {e.name for e in public_api()}
    for expected in ("pyterrier_lateint.ColBERT", "pyterrier_lateint.ColBERTIndex.retriever",
                     "pyterrier_lateint.ShardedColBERTIndex", "pyterrier_lateint.training.TrainingConfig",
                     "pyterrier_lateint.doc2query.Doc2Query", "pyterrier_lateint.data.load_collection",
                     "pyterrier_lateint.experiments.runner.run_experiment"):
        assert expected in names
    assert len(names) > 200


@pytest.mark.parametrize("entry", public_api(), ids=lambda e: e.name)
def test_docstring(entry: Entry):
    assert not problems(entry), f"{entry.name} ({entry.kind}): {'; '.join(problems(entry))}"


def test_sections_parser():
    doc = """Summary.

    Args:
        a: first.
        b (int): second,
            continued: not an entry.
        *args: more.
        **kwargs: keywords.

    Returns:
        int: the sum.
    """
    found = sections(doc)
    assert arg_names(found["Args"]) == {"a", "b", "*args", "**kwargs"}
    assert "Returns" in found and "Example" not in found
