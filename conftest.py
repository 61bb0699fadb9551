"""pytest runs the tests and the docstring examples under the verification's numerics:
x64 on, strict dtype promotion, rank promotion raises (and every warning is an error: pyproject.toml)."""
import atexit
import os
import shutil
import tempfile

# Compiling is most of the suite's time (thousands of small programs, each new shape of an eager operation
# its own), and LLVM's optimisation of them is most of each compile: the suite compiles at LLVM's -O0, here
# and in every subprocess it starts (-20% of the suite's time).  The arithmetic is the same IEEE operations
# (XLA's CPU fast-math is off either way); no test may depend on how LLVM schedules them.  XLA's newer CPU
# fusion emitters (MLIR) are turned off too: the older elemental emitter compiles a small program in about
# two thirds of the time (a jitted gradient of a 2-layer net: 103 ms -> 71-81 ms at -O0 on the 2-core CI
# machine; the whole suite 850 s -> 612 s, 2026-12-07).  The proof rows of `python -m verification` and the
# benchmarks run at XLA's default; `XLA_FLAGS= python -m pytest` runs the suite there too.  The mutation run's
# workers compile the same way (the flags are read when the first computation starts the backend, not at import).
import jax  # noqa: E402
import pytest

import verification
from verification.mutants.run import QUICK_COMPILE_XLA_FLAGS

os.environ.setdefault("XLA_FLAGS", QUICK_COMPILE_XLA_FLAGS)

verification.configure()

# A compilation cache for each test process (an xdist worker), removed when it exits: the suite compiles
# the same programs again and again (every seed, every new closure of the same loss), and jax's in-memory
# cache keys on the Python function, this one on the compiled program.  Private to the process: two
# processes writing and reading one entry at once can read it half-written.
_CACHE = tempfile.mkdtemp(prefix="jaxmlp-test-compile-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# A script run in a subprocess with 8 simulated devices (tests/test_sharding.py), not a test module.
collect_ignore = ["tests/sharded_check.py", "tests/multiprocess_worker.py"]


def pytest_configure(config):
    """``-n 2`` distributes by test, except that tests marked ``xdist_group`` (tests/test_multiprocess.py, whose
    module fixtures start the process clusters its tests share) all run on one worker: by test alone, each
    worker that ran one of them would start those clusters again.  (xdist's ``--dist loadgroup``, made the
    default of ``-n``; the workers learn it from ``workerinput``.)"""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("loadgroup"):
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist's hook, before a worker starts: tell it that the tests are grouped."""
    node.workerinput["loadgroup"] = node.config.getvalue("dist") == "loadgroup"


@pytest.fixture
def loss_side_only(monkeypatch):
    """A test that judges the loss-side diagnosis (causes, hypotheses, where-lines) runs the check without
    the line of the hand gradient: that has its own tests (tests/test_backward_*.py) and benchmark
    (``python -m verification --bugs``).  A module opts in with
    ``pytestmark = pytest.mark.usefixtures("loss_side_only")``."""
    from verification.checker.gradients import check

    monkeypatch.setattr(check, "LOCATE_BACKWARD", False)
