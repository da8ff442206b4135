"""Fault-injection tests of issue 11 (a package, so its conftest does not shadow test/conftest.py)."""
