"""The three parts of verification import in one direction: the checker never loads jaxmlp or optax."""
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
