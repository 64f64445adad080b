"""Tests that need a CUDA device (see conftest.py). A package, so that pytest imports its
conftest.py as ``gpu.conftest``: as a bare ``conftest`` it would replace tests/conftest.py in
``sys.modules``, and every later ``from conftest import ...`` in the suite would fail."""
