"""pytest runs the tests and the docstring examples under the verification's numerics:
x64 on, strict dtype promotion, rank promotion raises (and every warning is an error: pyproject.toml)."""
import verification

verification.configure()

# A script run in a subprocess with 8 simulated devices (tests/test_sharding.py), not a test module.
collect_ignore = ["tests/sharded_check.py", "tests/multiprocess_worker.py"]
