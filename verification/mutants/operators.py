"""The mutation operators: an ``ast`` walk over the target functions of one module, each mutant a replacement of
one node's source span (``lineno``/``col_offset``/``end_*``) by new text on the same lines.

Nothing is re-printed (``ast.unparse`` would renumber the file): the mutated file keeps every line number, so
``report.backward.lines`` entries ("file.py:LINE") can be compared with the mutated line.  Operators
(``OPERATORS``):

``arith``      ``+``<->``-``, ``*``<->``/``              ``negate``    a numeric term (right-hand side,
``constant``   0<->1, 1->2, 2->1, 0.5->1                               return value, lambda body) negated
``drop_term``  ``a + b`` -> ``a`` or ``b`` (``a - b`` -> ``a`` or ``-b``)
``transpose``  ``.T`` removed; ``.T`` added to an operand of ``@``
``swap``       the operands of ``@``, ``jnp.outer``, ``jnp.einsum`` swapped (``*`` is exactly commutative in IEEE
               arithmetic: swapping its operands is always equivalent, so it is not generated)
``variable``   a name replaced by another local of the same kind and shape (recorded on the original package)
``axis``       ``axis=k`` -> ``k±1``; an integer subscript ``c`` -> ``c±1``, an expression subscript ``e`` -> ``e±1``
``compare``    ``>``<->``>=``, ``<``<->``<=``, ``<``<->``>``, ``is``<->``is not``
"""
from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator, Sequence
from typing import NamedTuple

__all__ = ["OPERATORS", "Mutant", "apply", "enclosing_functions", "mutants_of", "target_nodes"]

OPERATORS = ("arith", "negate", "constant", "drop_term", "transpose", "swap", "variable", "axis", "compare")

_ARITH = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*")}
_COMPARE = {ast.Gt: (">", (">=", "<")), ast.GtE: (">=", (">", "<=")), ast.Lt: ("<", ("<=", ">")),
            ast.LtE: ("<=", ("<", ">=")), ast.Is: ("is", ("is not",)), ast.IsNot: ("is not", ("is",))}
_CONSTANTS = {0: (1,), 1: (0, 2), 2: (1,), 0.5: (1,)}  # by value; a float keeps its type (1.0 -> 2.0)
_NUMERIC_MODULES = ("jnp", "jax", "lax")


class Mutant(NamedTuple):
    """One mutant: ``module`` (file name in ``jaxmlp/``), the replaced span, and what replaces it."""

    module: str  # e.g. "optim/adam.py"
    operator: str
    function: str  # qualified name of the enclosing target function
    lineno: int
    col: int
    end_lineno: int
    end_col: int
    original: str  # the span's text
    replacement: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.lineno}:{self.col}:{self.operator}:{self.replacement}"

    @property
    def line(self) -> str:
        """``"basename.py:LINE"``, as the checker names a line."""
        return f"{self.module.rsplit('/', 1)[-1]}:{self.lineno}"

    def diff(self, source: str) -> str:
        """The mutated line(s) as a two-line diff."""
        old = source.splitlines()[self.lineno - 1:self.end_lineno]
        new = apply(source, self).splitlines()[self.lineno - 1:self.end_lineno]
        return "\n".join([f"- {o.strip()}" for o in old] + [f"+ {n.strip()}" for n in new])


def _offsets(source: str) -> list[int]:
    starts, pos = [0], 0
    for line in source.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _index(starts, source, lineno, col) -> int:
    """Character index of (lineno, utf-8 byte col)."""
    line_start = starts[lineno - 1]
    line = source[line_start:starts[lineno] if lineno < len(starts) else len(source)]
    return line_start + len(line.encode("utf-8")[:col].decode("utf-8"))


def apply(source: str, m: Mutant) -> str:
    """``source`` with ``m``'s span replaced; raises if the span no longer holds ``m.original`` or the line
    count would change."""
    starts = _offsets(source)
    i, j = _index(starts, source, m.lineno, m.col), _index(starts, source, m.end_lineno, m.end_col)
    if source[i:j] != m.original:
        raise ValueError(f"mutant {m.key}: the span holds {source[i:j]!r}, not {m.original!r}")
    out = source[:i] + m.replacement + source[j:]
    if out.count("\n") != source.count("\n"):
        raise ValueError(f"mutant {m.key}: the replacement changes the line count")
    return out


def enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Every function / lambda node -> its qualified name (lambdas as ``outer.<lambda@LINE>``)."""
    names: dict[ast.AST, str] = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[child] = prefix + child.name
                visit(child, names[child] + ".")
            elif isinstance(child, ast.Lambda):
                names[child] = f"{prefix}<lambda@{child.lineno}>"
                visit(child, names[child] + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return names


def target_nodes(tree: ast.AST, functions: Sequence[str]) -> list[ast.AST]:
    """The function / lambda nodes named in ``functions``: qualified names (``sgd.update``), or ``=KEYWORD`` for
    every lambda passed as that keyword argument (``=residual_scale``: the heads' Gauss-Newton scales).
    A name that matches nothing raises."""
    names = enclosing_functions(tree)
    found = [n for n, q in names.items() if q in functions]
    hit = {names[n] for n in found}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Lambda) and f"={node.arg}" in functions:
            found.append(node.value)
            hit.add(f"={node.arg}")
    missing = [f for f in functions if f not in hit]
    if missing:
        raise ValueError(f"mutation targets not found: {missing}")
    return found


def _gap_token(source, starts, left: ast.AST, right: ast.AST, token: str) -> tuple[int, int, int, int] | None:
    """The position (line, col, end_line, end_col; ast columns) of the operator ``token`` between two nodes."""
    i, j = _index(starts, source, left.end_lineno, left.end_col_offset), _index(starts, source, right.lineno, right.col_offset)
    gap = source[i:j]
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(gap).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        toks = []
    words = token.split()
    for k, t in enumerate(toks):
        if t.type == tokenize.OP and t.string == token or (t.type == tokenize.NAME and t.string == words[0] and [
                x.string for x in toks[k:k + len(words)]] == words):
            last = toks[k + len(words) - 1]
            line0, col0 = left.end_lineno, left.end_col_offset

            def pos(r, c, line0=line0, col0=col0):
                return (line0 + r - 1, (col0 if r == 1 else 0) + len(gap.split("\n")[r - 1][:c].encode("utf-8")))

            return pos(*t.start) + pos(*last.end)
    return None


def _seg(source, node) -> str:
    return ast.get_source_segment(source, node)


def _is_numeric(node: ast.AST) -> bool:
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return True
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("map", "tree_map"):
            return False  # a pytree: its negation is a TypeError; the lambda's body is negated instead
        while isinstance(f, ast.Attribute):
            f = f.value
        return isinstance(f, ast.Name) and f.id in _NUMERIC_MODULES
    return False


def _local_names(fn: ast.AST) -> list[str]:
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
    return list(dict.fromkeys(names))


def mutants_of(module: str, source: str, functions: Sequence[str],
               peers: dict[str, dict[str, Sequence[str]]] | None = None) -> list[Mutant]:
    """Every mutant of ``functions`` in ``source`` (the file ``jaxmlp/<module>``), in source order.

    ``peers``: per qualified function name, per local name, the other locals of the same kind and shape
    whenever both were seen while the original ran (:func:`verification.mutants.equivalence.record_peers`);
    the ``variable`` operator replaces a name only by one of its peers, so without ``peers`` it generates
    nothing."""
    tree = ast.parse(source)
    names = enclosing_functions(tree)
    starts = _offsets(source)
    out: dict[str, Mutant] = {}
    for fn in target_nodes(tree, functions):
        for m in _mutate_function(module, source, starts, fn, names, peers or {}):
            if m.replacement != m.original:
                out.setdefault(m.key, m)
    return sorted(out.values(), key=lambda m: (m.lineno, m.col, m.operator, m.replacement))


def _innermost(fn, names) -> dict[ast.AST, str]:
    """Each node inside ``fn`` -> the qualified name of its innermost function / lambda."""
    owner: dict[ast.AST, str] = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            inner = names.get(child, name)
            owner[child] = inner
            visit(child, inner)

    visit(fn, names[fn])
    return owner


def _mutate_function(module, source, starts, fn, names, peers) -> Iterator[Mutant]:
    owner = _innermost(fn, names)

    def mk(op, where, replacement, node=None):
        """A mutant replacing ``where`` (a node, or a position tuple of ``node``'s operator token)."""
        if isinstance(where, tuple):
            l0, c0, l1, c1 = where
        else:
            l0, c0, l1, c1 = where.lineno, where.col_offset, where.end_lineno, where.end_col_offset
            node = where
        i, j = _index(starts, source, l0, c0), _index(starts, source, l1, c1)
        return Mutant(module, op, owner.get(node, names[fn]), l0, c0, l1, c1, source[i:j], replacement)

    body = fn.body if isinstance(fn.body, list) else [fn.body]
    nodes = [n for b in body for n in ast.walk(b)]
    doc = {id(b.value) for b in body[:1] if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}
    for node in nodes:
        if id(node) in doc:
            continue
        if isinstance(node, ast.BinOp):
            yield from _binop(mk, source, starts, node)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            tok, repl = _COMPARE[type(node.ops[0])]
            pos = _gap_token(source, starts, node.left, node.comparators[0], tok)
            for r in repl if pos else ():
                yield mk("compare", pos, r, node)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in _CONSTANTS:
            if not _is_axis(node, nodes):
                for r in _CONSTANTS[node.value]:
                    yield mk("constant", node, repr(type(node.value)(r)))
        elif isinstance(node, ast.Attribute) and node.attr == "T":
            yield mk("transpose", node, f"({_seg(source, node.value)})")
        elif isinstance(node, ast.Call):
            yield from _call(mk, source, node)
        elif isinstance(node, ast.Subscript):
            yield from _subscript(mk, source, node)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Return)) and node.value is not None and _is_numeric(node.value):
            yield mk("negate", node.value, f"-({_seg(source, node.value)})")
        if isinstance(node, ast.Lambda) and _is_numeric(node.body):
            yield mk("negate", node.body, f"-({_seg(source, node.body)})")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            for other in peers.get(owner.get(node, names[fn]), {}).get(node.id, ()):
                yield mk("variable", node, other)
    if isinstance(fn, ast.Lambda) and _is_numeric(fn.body):
        yield mk("negate", fn.body, f"-({_seg(source, fn.body)})")


def _is_axis(node, nodes) -> bool:
    """Whether the constant is an ``axis=`` value or a subscript index (the ``axis`` operator's)."""
    for n in nodes:
        if isinstance(n, ast.keyword) and n.arg == "axis" and n.value is node:
            return True
        if isinstance(n, ast.Subscript) and (n.slice is node or isinstance(n.slice, ast.Tuple) and node in n.slice.elts):
            return True
        if isinstance(n, ast.UnaryOp) and n.operand is node and isinstance(n.op, ast.USub):
            return True  # -1 is a step or an axis, not one of the constants the operator changes
    return False


def _binop(mk, source, starts, node):
    op = type(node.op)
    left, right = _seg(source, node.left), _seg(source, node.right)
    if op in _ARITH:
        tok, new = _ARITH[op]
        pos = _gap_token(source, starts, node.left, node.right, tok)
        if pos:
            yield mk("arith", pos, new, node)
    if op in (ast.Add, ast.Sub):
        yield mk("drop_term", node, f"({left})")
        yield mk("drop_term", node, f"({right})" if op is ast.Add else f"(-({right}))")
    if op is ast.MatMult:
        yield mk("swap", node, f"({right}) @ ({left})")
        for side, text in (("left", left), ("right", right)):
            sub = node.left if side == "left" else node.right
            if not (isinstance(sub, ast.Attribute) and sub.attr == "T"):
                yield mk("transpose", sub, f"({text}).T")


def _call(mk, source, node):
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
    args = [_seg(source, a) for a in node.args]
    if name == "outer" and len(args) == 2:
        yield mk("swap", node, f"{_seg(source, f)}({args[1]}, {args[0]})")
    if name == "einsum" and len(args) == 3:
        yield mk("swap", node, f"{_seg(source, f)}({args[0]}, {args[2]}, {args[1]})")
    for kw in node.keywords:
        if kw.arg == "axis":
            v = kw.value
            c = v.operand.value if isinstance(v, ast.UnaryOp) and isinstance(v.operand, ast.Constant) else getattr(v, "value", None)
            if isinstance(v, ast.UnaryOp):
                c = -c
            if isinstance(c, int):
                for d in (c + 1, c - 1):
                    yield mk("axis", v, str(d))


def _subscript(mk, source, node):
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    for e in elts:
        if isinstance(e, ast.Slice) or isinstance(e, ast.Constant) and e.value is None:
            continue
        if isinstance(e, ast.Constant) and isinstance(e.value, int):
            for d in (e.value + 1, e.value - 1):
                yield mk("axis", e, str(d))
        elif isinstance(e, ast.UnaryOp) and isinstance(e.operand, ast.Constant) and isinstance(e.operand.value, int):
            c = -e.operand.value
            for d in (c + 1, c - 1):
                yield mk("axis", e, str(d))
        elif isinstance(e, (ast.Name, ast.BinOp)):
            text = _seg(source, e)
            for d in ("+ 1", "- 1"):
                yield mk("axis", e, f"({text} {d})")
