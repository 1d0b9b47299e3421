"""Python config files of model directories (DAMO-YOLO's ``damoyolo.py``) read without executing them.

ModelScope imports such a file as a module (hence its ``trust_remote_code=True``) and keeps its top-level names.
Here the file's syntax tree is evaluated instead, accepting only what a config holds: assignments of literals
(numbers, strings, bytes, True/False/None, tuples, lists, dicts, sets, unary minus) to plain names, where a value
may name a variable bound earlier in the file (the same object, as in the imported module: no copy, so names
nested in names cost nothing), plus docstrings. Anything else (calls, attribute access, imports,
comprehensions, lambdas, f-strings, subscripts, operators, control flow) is refused with an error naming the line,
so nothing in the file runs.
"""

from __future__ import annotations

import ast
import os

from ..errors import InvalidModelError

MAX_CONFIG_BYTES = 1 << 20
_MAX_DEPTH = 64


class _Evaluator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.names: dict[str, object] = {}

    def refuse(self, node: ast.AST, what: str) -> InvalidModelError:
        line = getattr(node, "lineno", "?")
        return InvalidModelError(
            f"{self.path}, line {line}: {what} is not allowed in a config file (msvision reads it as literals "
            f"and never runs it)"
        )

    def value(self, node: ast.AST, depth: int = 0) -> object:
        if depth > _MAX_DEPTH:
            raise self.refuse(node, "nesting this deep")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes, int, float, complex, bool, type(None))):
                return node.value
            raise self.refuse(node, f"the constant {type(node.value).__name__}")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in self.names:
                raise self.refuse(node, f"the name {node.id!r} (not assigned earlier in the file)")
            return self.names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand, depth + 1)
            if isinstance(operand, bool) or not isinstance(operand, (int, float, complex)):
                raise self.refuse(node, "a sign on something other than a number")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.value(e, depth + 1) for e in node.elts]
            if isinstance(node, ast.Tuple):
                return tuple(items)
            if isinstance(node, ast.List):
                return items
            try:
                return set(items)
            except TypeError:
                raise self.refuse(node, "an unhashable set element") from None
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                if k is None:
                    raise self.refuse(node, "dict unpacking (**)")
                key = self.value(k, depth + 1)
                try:
                    out[key] = self.value(v, depth + 1)
                except TypeError:
                    raise self.refuse(k, "an unhashable dict key") from None
            return out
        kinds = {
            ast.Call: "a call",
            ast.Attribute: "attribute access",
            ast.Lambda: "a lambda",
            ast.JoinedStr: "an f-string",
            ast.ListComp: "a comprehension",
            ast.DictComp: "a comprehension",
            ast.SetComp: "a comprehension",
            ast.GeneratorExp: "a generator expression",
            ast.Subscript: "subscripting",
            ast.BinOp: "an operator",
            ast.BoolOp: "an operator",
            ast.Compare: "a comparison",
            ast.IfExp: "a conditional expression",
            ast.Starred: "unpacking (*)",
            ast.NamedExpr: "an assignment expression",
            ast.Await: "await",
            ast.Yield: "yield",
        }
        raise self.refuse(node, kinds.get(type(node), f"the expression {type(node).__name__}"))

    def module(self, tree: ast.Module) -> dict[str, object]:
        for stmt in tree.body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                continue  # a docstring
            if isinstance(stmt, ast.Assign):
                value = self.value(stmt.value)
                for target in stmt.targets:
                    if not isinstance(target, ast.Name):
                        raise self.refuse(stmt, "assigning to anything but a plain name")
                    self.names[target.id] = value
                continue
            kinds = {
                ast.Import: "an import",
                ast.ImportFrom: "an import",
                ast.FunctionDef: "a function definition",
                ast.AsyncFunctionDef: "a function definition",
                ast.ClassDef: "a class definition",
                ast.AugAssign: "an augmented assignment",
                ast.AnnAssign: "an annotated assignment",
                ast.Expr: "an expression statement",
            }
            raise self.refuse(stmt, kinds.get(type(stmt), f"the statement {type(stmt).__name__}"))
        return {k: v for k, v in self.names.items() if not k.startswith("__")}


def read_python_config(path: str | os.PathLike[str]) -> dict[str, object]:
    """The top-level names of a Python config file (those not starting with ``__``) and their literal values."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidModelError(f"missing config file {path}")
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise InvalidModelError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not a config file")
    try:
        with open(path, "rb") as f:
            source = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidModelError(f"{path} is not UTF-8 text: {e}") from None
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise InvalidModelError(f"{path}, line {e.lineno}: not valid Python: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise InvalidModelError(f"{path}: cannot parse: {type(e).__name__}") from None
    try:
        return _Evaluator(path).module(tree)
    except RecursionError:  # hashing a set element or dict key nested too deeply through names
        raise InvalidModelError(f"{path}: values nested too deeply") from None


def read_literal_file(path: str | os.PathLike[str], what: str) -> object:
    """A text file holding one Python literal, read as ModelScope's TinyNAS loader does: every whitespace
    character removed (so a structure may span lines), then ``ast.literal_eval``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidModelError(f"missing {what} {path}")
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise InvalidModelError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not a {what}")
    try:
        with open(path, encoding="utf-8") as f:
            text = "".join(ch.strip() for ch in f.read())
        return ast.literal_eval(text)
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, UnicodeDecodeError) as e:
        raise InvalidModelError(f"{path}: not a Python literal ({what}): {type(e).__name__}") from None
