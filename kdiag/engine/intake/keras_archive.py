"""A .keras archive, checked before any byte of it is decompressed, and its JSON read once.

A .keras file is a zip: config.json (the model's layers), metadata.json (the Keras version) and
model.weights.h5. A zip entry can store almost nothing and inflate to gigabytes; a 1 MB file whose
config.json inflated hugely took 2.76 GB and 31 s before kdiag's checks were done with it, since
`testzip()` inflated every entry and config.json was then parsed three times (issue 20). So, from
the zip's directory alone, before anything is inflated:

- the number of entries, each entry's declared size against its stored size (a ratio no real
  model has), and the total against the archive's size;
- config.json and metadata.json against small caps (`JSON_CAPS`): they describe layers, not weights;
- the memory parsing them takes (`JSON_PARSE_FACTOR` x their size) and the weights' declared size,
  against the memory available.

Only then is each entry inflated, once, in chunks: its checksum verified (Python's zipfile stops an
entry at its declared size, so a lie fails its CRC), and the two JSON files kept, each stopped at
its cap whatever its header says, and parsed once. The parsed
`KerasArchive` is what kdiag.engine.intake.load, kdiag.engine.intake.safety and kdiag.engine.intake.keras_era share.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

from kdiag.engine.intake import limits
from kdiag.errors import KdiagError

CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
MIB = 1 << 20
#: Caps on the JSON entries. A config.json describes layers: ResNet50's is 0.2 MiB, a model of
#: thousands of layers a few MiB. metadata.json holds a version and a date.
JSON_CAPS = {CONFIG_MEMBER: 64 * MIB, METADATA_MEMBER: 1 * MIB}
#: Python objects per byte of JSON parsed, at worst: measured 29.5x for `[{"a":[]}, ...]` (a dict and
#: a list per 9 bytes), 24x for `[{}, {}, ...]`, 5.2x for ResNet50's real config, 2x for long strings.
JSON_PARSE_FACTOR = 32
#: An archive with more entries than this is no Keras model (which writes three, plus assets).
MAX_ENTRIES = 10_000
#: An entry that inflates more than this many times its stored bytes, beyond EXPANSION_FLOOR, is a
#: bomb: Keras stores its entries uncompressed (1x), DEFLATE tops out near 1,032x, and weights
#: compress 1-2x. Keras' own guard uses the same ratio from 4 GiB up; kdiag refuses from 16 MiB.
MAX_EXPANSION = 100
EXPANSION_FLOOR = 16 * MIB
READ_CHUNK = 1 * MIB
FIX = "save the model again with model.save('model.keras')"


@dataclasses.dataclass(frozen=True)
class KerasArchive:
    """What a .keras archive holds, as read once: its parsed JSON and its entries' declared sizes."""

    path: Path
    config: dict  # config.json, parsed (the model config, with compile_config when it was compiled)
    metadata: Optional[dict]  # metadata.json, parsed; None when absent or not a JSON object
    members: Tuple[str, ...]
    json_bytes: int  # config.json and metadata.json, inflated
    weights_bytes: int  # the .h5 entries as declared, inflated

    @property
    def keras_version(self) -> Optional[str]:
        version = (self.metadata or {}).get("keras_version")
        return version if isinstance(version, str) else None


def read_keras_archive(path: Path) -> KerasArchive:
    """Check the archive's sizes, then its checksums, then read and parse its JSON entries once.

    Every refusal is a KdiagError naming the file and the entry.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise KdiagError(
            f"{path.name} is not a valid .keras file (not a zip archive: truncated, or another format renamed)", FIX)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            check_declared_sizes(path, infos)
            texts = _verify(path, archive, infos)  # each entry inflated once: its CRC, and the JSON kept
    except KdiagError:
        raise
    except Exception as exc:  # zipfile's and zlib's errors for damaged archives vary
        raise KdiagError(f"{path.name} is damaged ({type(exc).__name__}: {exc})", FIX) from exc
    members = tuple(info.filename for info in infos)
    if CONFIG_MEMBER not in texts:
        raise KdiagError(f"{path.name} is a zip archive without config.json, so not a .keras model", FIX)
    config = _parse(path, CONFIG_MEMBER, texts[CONFIG_MEMBER])
    # metadata.json only informs (the Keras version): damaged, it says nothing, as before.
    metadata = _parse(path, METADATA_MEMBER, texts[METADATA_MEMBER], strict=False) \
        if METADATA_MEMBER in texts else None
    if not isinstance(config, dict):
        raise KdiagError(f"{path.name} has a config.json that is not a model config", "save the model again")
    return KerasArchive(path, config, metadata if isinstance(metadata, dict) else None, members,
                        _json_bytes(infos), _weights_bytes(infos))


def check_declared_sizes(path: Path, infos) -> None:
    """Refuse, from the zip directory alone, an archive whose entries would inflate beyond reason or
    beyond the memory available."""
    if len(infos) > MAX_ENTRIES:
        raise KdiagError(f"{path.name} holds {len(infos):,} entries; a .keras model holds a few", FIX)
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        # zipfile (and so Keras) reads the last of two same-named entries: kdiag must read what Keras will.
        twice = sorted({name for name in names if names.count(name) > 1})
        raise KdiagError(f"{path.name} holds two entries named {twice[0]!r}; a .keras model names each once", FIX)
    stored_total = max(path.stat().st_size, 1)
    declared_total = 0
    for info in infos:
        declared_total += info.file_size
        cap = JSON_CAPS.get(info.filename)
        if cap is not None and info.file_size > cap:
            raise KdiagError(
                f"{path.name}'s {info.filename} declares {limits.size_text(info.file_size)} inflated, more than "
                f"any model's (at most {limits.size_text(cap)}): a decompression bomb, not a model", FIX)
        if info.file_size > EXPANSION_FLOOR and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
            raise KdiagError(_bomb(path, info.filename, info.compress_size, info.file_size), FIX)
    # Entries may share stored bytes (overlapping entries): the total, against the file, catches that.
    if declared_total > EXPANSION_FLOOR and declared_total > MAX_EXPANSION * stored_total:
        raise KdiagError(_bomb(path, f"{len(infos):,} entries", stored_total, declared_total), FIX)
    check_archive_memory(path.name, _weights_bytes(infos), _json_bytes(infos))


def check_archive_memory(what: str, weights_bytes: int, json_bytes: int) -> None:
    """Loading holds the weights twice (limits.LOAD_COPIES) and a parsed config takes up to
    JSON_PARSE_FACTOR times its size: refuse before either is read when they would not fit."""
    need = limits.LOAD_COPIES * weights_bytes + JSON_PARSE_FACTOR * json_bytes
    available = limits.available_memory_bytes()
    if need > available:
        raise KdiagError(
            f"not enough memory to load {what}: {limits.needs_line(need, available)} (its weights take "
            f"{limits.size_text(weights_bytes)}, its config {limits.size_text(json_bytes)} before parsing)",
            limits.FREE_MEMORY_FIX)


def _bomb(path: Path, what: str, stored: int, declared: int) -> str:
    return (f"{path.name}'s {what} would inflate from {limits.size_text(stored)} to {limits.size_text(declared)} "
            f"({declared // max(stored, 1):,}x): a decompression bomb, not a model")


def _verify(path: Path, archive: zipfile.ZipFile, infos) -> Dict[str, bytes]:
    """Inflate every entry once, in chunks: zipfile checks its CRC-32 at the end (as `testzip` does)
    and stops at its declared size; the JSON entries are kept, each stopped at its cap whatever the
    zip headers say."""
    texts = {}
    for info in infos:
        cap = JSON_CAPS.get(info.filename)
        chunks, size = [], 0
        try:
            with archive.open(info) as handle:
                while True:
                    chunk = handle.read(READ_CHUNK)
                    if not chunk:
                        break
                    if cap is not None:
                        size += len(chunk)
                        if size > cap:
                            raise KdiagError(f"{path.name}'s {info.filename} inflates beyond "
                                             f"{limits.size_text(cap)}, more than any model's: a decompression "
                                             "bomb, not a model", FIX)
                        chunks.append(chunk)
        except zipfile.BadZipFile as exc:
            raise KdiagError(f"{path.name} is damaged (entry {info.filename} fails its checksum)", FIX) from exc
        if cap is not None:
            texts[info.filename] = b"".join(chunks)
    return texts


def _parse(path: Path, member: str, text: bytes, strict: bool = True):
    """A JSON entry parsed (not `strict`: None when it is not valid JSON)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, deep nesting
        if not strict:
            return None
        if isinstance(exc, RecursionError):
            raise KdiagError(f"{path.name} is damaged (its {member} nests deeper than any model config)",
                             FIX) from exc
        raise KdiagError(f"{path.name} is damaged (its {member} is not valid JSON: {exc})", FIX) from exc


def _json_bytes(infos) -> int:
    return sum(info.file_size for info in infos if info.filename in JSON_CAPS)


def _weights_bytes(infos) -> int:
    return sum(info.file_size for info in infos if info.filename.lower().endswith((".h5", ".hdf5")))
