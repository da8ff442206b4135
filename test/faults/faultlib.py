"""Helpers of the fault-injection tests: damage an index copy in a controlled way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from foenet_ros.index.manifest import CHECKSUM_KEY, MANIFEST, manifest_checksum, write_manifest

HFOV = 70.0  # the camera of the fault tests' index and frames
IMAGE_SIZE = (640, 480)

def reseal(index: Path, edit: Callable[[dict], None] | None = None) -> dict:
    """Apply ``edit`` to the manifest and write it back *with a valid checksum and file hashes*.

    This models a damaged index whose damage the checksums cannot see (an old builder, a bug,
    a hand edit followed by a re-seal): the semantic checks must catch it on their own.
    """
    manifest = json.loads((index / MANIFEST).read_text())
    if edit is not None:
        edit(manifest)
    return write_manifest(index, manifest)


def write_sealed(index: Path, manifest) -> None:
    """Write ``manifest`` exactly as given (files included), with a matching checksum when it is an object."""
    if isinstance(manifest, dict):
        manifest = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
        manifest[CHECKSUM_KEY] = manifest_checksum(manifest)
    (index / MANIFEST).write_text(json.dumps(manifest, indent=2))


def flip_bytes(path: Path, offset: int, n: int = 16) -> None:
    """Invert ``n`` bytes at ``offset`` in place (same size: a size check cannot see it)."""
    data = bytearray(path.read_bytes())
    offset = offset % max(1, len(data) - n)
    for i in range(offset, offset + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DELETE = object()  # set_path value: remove the key


def set_path(path: list, value):
    """An edit function for nested JSON: ``set_path(["model", "dim"], 5)(doc)`` sets (or deletes) one value."""

    def edit(doc):
        d = doc
        for key in path[:-1]:
            d = d[key]
        if value is DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value
        return doc

    return edit
