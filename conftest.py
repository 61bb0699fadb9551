"""pytest runs the tests and the docstring examples under the verification's numerics:
x64 on, strict dtype promotion, rank promotion raises (and every warning is an error: pyproject.toml)."""
import os
import tempfile

import jax

import verification

verification.configure()

# One compilation cache for the run, shared by the xdist workers: the suite compiles the same programs
# again and again (every seed, every new closure of the same loss), and jax's in-memory cache keys on the
# Python function, this one on the compiled program.  Keyed by jax's version and flags too, so a stale
# entry is never used.
# The processes the tests start (the CLI, the experiments, multi-process training) share it through the
# environment.
CACHE = {"jax_compilation_cache_dir": os.path.join(tempfile.gettempdir(), f"jaxmlp-tests-{os.getuid()}"),
         "jax_persistent_cache_min_compile_time_secs": 0.0, "jax_persistent_cache_min_entry_size_bytes": 0}
for _name, _value in CACHE.items():
    jax.config.update(_name, _value)
    os.environ.setdefault(_name.upper(), str(_value))

# A script run in a subprocess with 8 simulated devices (tests/test_sharding.py), not a test module.
collect_ignore = ["tests/sharded_check.py", "tests/multiprocess_worker.py"]
