"""The engine: loading models, building inputs, the strategies, timing, profiling, the C++ floor.

It may import the data model (what it produces) and nothing above it.
"""
