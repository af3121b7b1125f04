"""The ways of calling a model that kdiag times (strategies), and the C++ floor."""
