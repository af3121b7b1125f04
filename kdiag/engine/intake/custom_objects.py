"""`--custom-objects module.py`: the user's own classes, loaded only with their consent."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from kdiag.errors import KdiagError, first_line


def load_custom_objects(path: str) -> dict:
    """Import the file (its code runs: the user asked for that) and collect its classes and functions."""
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise KdiagError(f"--custom-objects {path} is not a Python file", "give the .py file that defines the classes")
    from kdiag.engine.tf import quiet_tensorflow

    quiet_tensorflow()  # before the module imports it: its native start-up and log level are kdiag's
    spec = importlib.util.spec_from_file_location(f"kdiag_custom_objects_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a training script may parse argv or exit when imported
        raise KdiagError(
            f"--custom-objects {file.name} failed to import ({type(exc).__name__}: {first_line(exc)})",
            f"fix the module so that `python {file}` runs",
        ) from exc
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }
