"""Does a model file look saved by Keras 2 (or 1)? The signs, in words, for the report.

Most `.h5` files people have were written by Keras 2. Keras 3 reads them, but runs them through
its own code, so predict's cost can change with the upgrade: the report says so and names
`--keras both`. Read with h5py, or from the .keras archive kdiag.engine.intake.keras_archive read,
after kdiag.engine.intake.load has checked the file (the HDF5 probe, the safety scan); informational,
so a file it cannot read has no signs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from kdiag.engine.intake.keras_archive import KerasArchive, read_keras_archive

#: Backends only Keras 1 and 2 had.
OLD_BACKENDS = frozenset({"theano", "cntk"})


@dataclasses.dataclass(frozen=True)
class Era:
    """What a file says of the Keras that wrote it: its version, and the signs of Keras 2 or 1."""

    version: Optional[str] = None  # "3.15.1", "2.2.4"; None when the file does not say
    signs: Tuple[str, ...] = ()


def read_era(path: Path, archive: Optional[KerasArchive] = None) -> Era:
    """The file's era; a .keras file's from its archive as already read, when given."""
    read = _read(path, archive)
    if read is None:
        return Era()
    return Era(read[0] if isinstance(read[0], str) else None, tuple(_signs(*read)))


def keras2_signs(path: Path, archive: Optional[KerasArchive] = None) -> List[str]:
    """Why `path` looks saved by Keras 2 or 1, one phrase per sign; empty when nothing says so."""
    return list(read_era(path, archive).signs)


def saved_by_keras_version(path: Path, archive: Optional[KerasArchive] = None) -> Optional[str]:
    """The Keras version the file says wrote it ("3.15.1", "2.2.4"), when it says."""
    return read_era(path, archive).version


def _read(path: Path, archive: Optional[KerasArchive] = None):
    """(keras_version, backend, model config, where the version was read) of a .keras or HDF5 file."""
    try:
        if path.suffix.lower() == ".keras":
            archive = archive if archive is not None else read_keras_archive(path)
            return archive.keras_version, None, archive.config, "metadata.json's keras_version"
        import h5py

        with h5py.File(path, "r") as handle:
            version, backend = _text(handle.attrs.get("keras_version")), _text(handle.attrs.get("backend"))
            raw = handle.attrs.get("model_config")
        config = json.loads(_text(raw)) if raw is not None else None
        return version, backend, config, "its keras_version attribute"
    except Exception:  # the loader has already judged the file; what cannot be read here says nothing
        return None


def _signs(version, backend, config, version_where: str) -> List[str]:
    signs = []
    if isinstance(version, str) and version.split(".", 1)[0] in ("1", "2"):
        signs.append(f"{version_where} is {version!r}")
    if isinstance(backend, str) and backend.lower() in OLD_BACKENDS:
        signs.append(f"its backend attribute is {backend!r}, a backend only Keras 1 and 2 had")
    if any("batch_input_shape" in layer_config for layer_config in _layer_configs(config)):
        signs.append("its input layers use the Keras 2 config name 'batch_input_shape' (Keras 3 writes "
                     "'batch_shape')")
    # Keras 3 writes a `module` key with every serialised object (each layer's dtype policy at least);
    # Keras 2 before 2.13 wrote none.
    if not _has_key(config, "module") and any(name != "InputLayer" for name in _class_names(config)):
        signs.append("its model config has no 'module' keys, as configs written before Keras 2.13")
    return signs


def _text(value) -> Optional[str]:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _objects(value) -> Iterator[dict]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _layer_configs(config) -> Iterator[dict]:
    for item in _objects(config):
        if isinstance(item.get("class_name"), str) and isinstance(item.get("config"), dict):
            yield item["config"]


def _class_names(config) -> Iterator[str]:
    for item in _objects(config):
        if isinstance(item.get("class_name"), str) and isinstance(item.get("config"), dict):
            yield item["class_name"]


def _has_key(config, key: str) -> bool:
    return any(key in item for item in _objects(config))
