"""The three parts of verification import in one direction: the checker never loads jaxmlp or optax."""
import ast
import pathlib
import subprocess
import sys

import verification


def _modules_after(stmt):
    code = f"import sys; {stmt}; print(sorted(m for m in ('jaxmlp', 'optax') if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def test_import_verification_leaves_jaxmlp_and_optax_out():
    assert _modules_after("import verification") == "[]"


def test_the_catalogue_needs_no_model_library():
    assert _modules_after("import verification.catalogue, verification.catalogue.rule_bugs") == "[]"


def test_the_suite_is_where_jaxmlp_comes_in():
    assert _modules_after("import verification.suite") == "['jaxmlp', 'optax']"


def test_public_api_is_the_general_checker():
    public = set(verification.__all__)
    assert {"check_gradients", "check_custom_vjp", "check_hvp", "tap", "CAUSES",
            "GradientReport", "RuleReport", "Diagnosis", "Hypothesis", "RuleFinding"} <= public
    assert not public & {"CHECKS", "run_checks", "Row"}
    assert all(hasattr(verification, n) for n in public)


# The checker's rooms and the rooms each may import (docs/layout.md): base <- jaxpr <- explain <- gradients,
# explain <- backward <- rules <- gradients.
ROOMS = {"base": {"base"}, "jaxpr": {"base", "jaxpr"}, "explain": {"base", "jaxpr", "explain"},
         "backward": {"base", "jaxpr", "explain", "backward"}, "rules": {"base", "jaxpr", "backward", "rules"},
         "gradients": {"base", "jaxpr", "explain", "backward", "rules", "gradients"}}
CHECKER = pathlib.Path(verification.__file__).parent / "checker"


def _checker_imports():
    """``{module: {imported checker modules}}`` for every module of verification.checker (imports inside
    functions too)."""
    out = {}
    for path in CHECKER.rglob("*.py"):
        name = ".".join(path.relative_to(CHECKER.parent.parent).with_suffix("").parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("verification.checker"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if (CHECKER.parent.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("verification.checker")}
        out[name.removesuffix(".__init__")] = found
    return out


def _room(module):
    parts = module.split(".")
    return parts[2] if len(parts) > 3 else None


def test_every_checker_module_lives_in_a_room():
    rooms = {_room(m) for m in _checker_imports()} - {None}
    assert rooms == set(ROOMS), rooms
    loose = [p.name for p in CHECKER.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the rooms: {loose}"


def test_checker_imports_go_one_way():
    wrong = [(m, i) for m, imports in _checker_imports().items() for i in imports
             if _room(m) and _room(i) and _room(i) not in ROOMS[_room(m)]]
    assert not wrong, wrong


def test_no_import_circle_in_the_checker():
    graph = _checker_imports()
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", " -> ".join(path + [m])
        state[m] = "open"
        for n in graph.get(m, ()):
            if n in graph and n != m:
                visit(n, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_no_module_name_uses_a_word_in_two_senses():
    """'rule' is a custom_vjp / custom_jvp rule, never a primitive's derivative; 'linear' is a linear map
    (a rule's Jacobian), never the linearity of an edit's effect."""
    names = {str(p.relative_to(CHECKER)) for p in CHECKER.rglob("*.py")}
    assert not [n for n in names if "rule" in pathlib.Path(n).stem and not n.startswith(("rules/", "jaxpr/rule_calls",
                                                                                          "gradients/blame_rules"))]
    assert [n for n in names if "linear" in n] == ["rules/linear_maps.py"]
