"""A custom tool's JSON schema from its source text, without running it (MassGen spec §2.5).

MassGen imports the user's file and builds the schema with pydantic from the live signature. Here the
file is only parsed (:mod:`ast`): the loader and the agent worker never execute user code; the executor
runs it, in the agent's sandbox. Annotations are read structurally:

- ``str``/``int``/``float``/``bool`` -> ``string``/``integer``/``number``/``boolean``;
- ``list[X]``, ``List[X]``, ``tuple``, ``Sequence[X]`` -> ``array`` (with ``items``);
- ``dict``, ``Dict[K, V]``, ``Mapping`` -> ``object``;
- ``Optional[X]``, ``X | None``, ``Union[X, Y]`` -> ``X`` that also accepts null / ``anyOf``;
- ``Literal["a", "b"]`` -> ``enum``; ``Annotated[X, ...]`` -> ``X``;
- anything else (a class of the user's, no annotation) -> no type constraint.

A parameter with a default is not required; a literal default is shown as ``default``. Descriptions
come from the docstring (Google, reST or NumPy style, parsed by ``docstring_parser`` as MassGen does):
its description for the tool, its ``Args`` entries for the parameters.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import docstring_parser

INJECTED = "agent_cwd"
"""The parameter the executor fills with the agent's workspace (MassGen injects it too)."""

_SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_ARRAYS = {"list", "List", "tuple", "Tuple", "Sequence", "MutableSequence", "set", "Set", "frozenset", "Iterable"}
_OBJECTS = {"dict", "Dict", "Mapping", "MutableMapping", "TypedDict"}


def find_function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The module-level ``def``/``async def`` called ``name`` (the last one, as Python binds it)."""
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            found = node
    return found


def parameter_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[str], bool]:
    """The names a caller can pass by keyword, and whether the function takes ``**kwargs``."""
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)], a.kwarg is not None


def tool_schema(fn: ast.FunctionDef | ast.AsyncFunctionDef, hidden: set[str]) -> tuple[str, dict[str, Any]]:
    """The docstring's description and the JSON schema of ``fn``'s parameters, without ``hidden`` ones
    (the ``preset_args``), ``agent_cwd``, ``self``/``cls``, ``*args`` and ``**kwargs``."""
    doc = docstring_parser.parse(ast.get_docstring(fn) or "")
    described = {p.arg_name: p.description or "" for p in doc.params}
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    defaults: dict[str, ast.expr] = dict(zip([p.arg for p in positional[len(positional) - len(a.defaults):]],
                                             a.defaults, strict=True))
    defaults |= {p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for i, p in enumerate((*positional, *a.kwonlyargs)):
        if p.arg in hidden or p.arg == INJECTED or (i == 0 and p.arg in ("self", "cls")):
            continue
        prop = annotation_schema(p.annotation)
        if described.get(p.arg):
            prop["description"] = described[p.arg]
        if p.arg in defaults:
            default = _literal(defaults[p.arg])
            if default is not _NO_LITERAL:
                prop["default"] = default
        else:
            required.append(p.arg)
        properties[p.arg] = prop
    return (doc.description or "").strip(), {"type": "object", "properties": properties, "required": required}


def annotation_schema(node: ast.expr | None) -> dict[str, Any]:
    """The JSON schema of one annotation (module docstring); ``{}`` when it says nothing usable."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation: "list[int]"
        try:
            return annotation_schema(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([*_flatten_or(node.left), *_flatten_or(node.right)])
    if isinstance(node, ast.Subscript):
        return _generic(_name(node.value), _elements(node.slice))
    name = _name(node)
    if name in _SCALARS:
        return {"type": _SCALARS[name]}
    if name in _ARRAYS:
        return {"type": "array"}
    if name in _OBJECTS:
        return {"type": "object"}
    return {}


def _generic(name: str, args: list[ast.expr]) -> dict[str, Any]:
    if name == "Optional" and args:
        return _union([args[0], ast.Constant(value=None)])
    if name == "Union":
        return _union(args)
    if name == "Annotated" and args:
        return annotation_schema(args[0])
    if name == "Literal":
        values = [v for v in (_literal(a) for a in args) if v is not _NO_LITERAL]
        kinds = {_SCALARS.get(type(v).__name__) for v in values}
        return {"type": kinds.pop(), "enum": values} if len(kinds) == 1 and None not in kinds else {"enum": values}
    if name in _ARRAYS:
        items = annotation_schema(args[0]) if args and name not in ("tuple", "Tuple") else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if name in _OBJECTS:
        values = annotation_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    return annotation_schema(ast.Name(id=name))


def _union(members: list[ast.expr]) -> dict[str, Any]:
    schemas = [annotation_schema(m) for m in members]
    if any(s == {} for s in schemas):
        return {}
    nullable = {"type": "null"} in schemas
    rest = [s for s in schemas if s != {"type": "null"}]
    if len(rest) == 1 and nullable and set(rest[0]) == {"type"}:
        return {"type": [rest[0]["type"], "null"]}
    if len(rest) == 1 and not nullable:
        return rest[0]
    return {"anyOf": rest + ([{"type": "null"}] if nullable else [])}


def _flatten_or(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*_flatten_or(node.left), *_flatten_or(node.right)]
    return [node]


def _elements(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _name(node: ast.expr) -> str:
    """``List`` for ``List``, ``typing.List`` and ``t.List``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


_NO_LITERAL = object()


def _literal(node: ast.expr) -> Any:
    """The JSON value of a literal expression, or ``_NO_LITERAL``."""
    try:
        value = ast.literal_eval(node)
        json.dumps(value)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return _NO_LITERAL
    return value
