"""The data model: what one run measured, as frozen dataclasses, and its JSON round trip.

Standard library only. Nothing here imports TensorFlow, NumPy, rich, cProfile/pstats or
the code that measures or profiles (an import-linter contract in pyproject.toml checks
it), so `kdiag compare` and every renderer can read a Report without loading any of that.
"""
