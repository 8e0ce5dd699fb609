"""Offline resolution of pretrained weight files (perceptual backbones, DISTS, ...) through a manifest.

Nothing here downloads unless asked: :func:`resolve_weights` looks for the manifest's file name in the weights
directory and fails with an error naming the file, the directory searched, the URL and the ``--allow-download``
flag. With ``allow_download=True`` it fetches the URL with ``torch.hub.download_url_to_file`` (progress bar, temp
file + ``os.replace``) and verifies the SHA-256 before the file is ever used. ``paragonsr train --allow-download``
turns it on for a whole run (through ``$PARAGONSR_ALLOW_DOWNLOAD=1``).

Weights directory, first found: the ``weights_dir`` argument, ``$PARAGONSR_WEIGHTS``, ``~/.cache/paragonsr/weights``.

Manifest (``weights_manifest.json`` beside this module, or any JSON given as ``manifest=``)::

    {"vgg19": {"file": "vgg19-dcbb9e9d.pth", "url": "https://...", "sha256": "<64 hex>" | null,
               "sha256_prefix": "dcbb9e9d", "license": "...", "description": "..."}}

``sha256`` is checked when present. torchvision names its files ``<name>-<first 8 hex of sha256>.pth``; for those we
record that ``sha256_prefix`` and check it when the full hash is not in the manifest yet; the full hash of such a
file is logged (and printed by ``python -m paragonsr.weights NAME``) so it can be pinned.

Code that loads several files from the same place passes one :class:`WeightSource` (folder, download permission,
manifest) instead of the three values.

Fetch or check files from a shell::

    python -m paragonsr.weights vgg19 dists [--weights-dir DIR] [--allow-download]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paragonsr.errors import ParagonSRError
from paragonsr.utils.atomic import atomic_output

log = logging.getLogger(__name__)
MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
ENV_VAR = "PARAGONSR_WEIGHTS"
# Set to 1 by `paragonsr train --allow-download`: every loss/metric of the run may fetch its missing files.
ALLOW_DOWNLOAD_ENV = "PARAGONSR_ALLOW_DOWNLOAD"


class WeightsError(ParagonSRError, FileNotFoundError):
    """A weight file is missing, unknown or does not match its manifest hash."""


def default_weights_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "paragonsr" / "weights"


def load_manifest(manifest: str | Path | dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    if isinstance(manifest, dict):
        return manifest
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, entry: dict[str, Any], name: str) -> str:
    """Check ``path`` against the entry's sha256 (or sha256_prefix); return the full digest."""
    digest = sha256_file(path)
    want = (entry.get("sha256") or "").lower()
    prefix = (entry.get("sha256_prefix") or "").lower()
    if want and digest != want:
        raise WeightsError(
            f"weights '{name}': {path} has sha256 {digest}, the manifest expects {want}. The file is corrupt or "
            f"a different version; delete it and fetch it again from {entry.get('url')}."
        )
    if not want and prefix and not digest.startswith(prefix):
        raise WeightsError(
            f"weights '{name}': {path} has sha256 {digest}, which does not start with the manifest's prefix "
            f"{prefix}. Delete it and fetch it again from {entry.get('url')}."
        )
    if not want:
        log.info("weights '%s': %s has sha256 %s (pin it in the manifest)", name, path, digest)
    return digest


def _download(url: str, dest: Path, entry: dict[str, Any], name: str) -> None:
    """Fetch ``url`` with ``torch.hub.download_url_to_file`` (progress bar; the SHA-256 checked against the
    manifest's full hash, or its prefix, while streaming) into a temp file beside ``dest``, placed with
    ``os.replace`` only when it matches. Raises ``WeightsError`` naming the weights and the URL."""
    from torch.hub import download_url_to_file

    want = (entry.get("sha256") or entry.get("sha256_prefix") or "").lower() or None
    with atomic_output(dest, suffix=".part") as tmp:
        try:
            download_url_to_file(url, str(tmp), hash_prefix=want, progress=True)
        except RuntimeError as exc:  # the streamed hash differs from the manifest's
            raise WeightsError(
                f"weights '{name}': the download from {url} does not match the manifest's sha256 ({exc}); "
                "nothing was saved"
            ) from None
        except OSError as exc:
            raise WeightsError(f"weights '{name}': cannot download {url} ({exc})") from None


def resolve_weights(
    name: str,
    weights_dir: str | Path | None = None,
    allow_download: bool = False,
    manifest: str | Path | dict[str, Any] | None = None,
) -> Path:
    """Path of the verified local weight file for manifest entry ``name`` (see the module docstring)."""
    entries = load_manifest(manifest)
    if name not in entries:
        raise WeightsError(f"no weights named '{name}' in the manifest; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    if "file" not in entry:
        raise WeightsError(f"manifest entry '{name}' has no 'file' key")
    folder = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    path = folder / entry["file"]
    if not path.is_file():
        url = entry.get("url")
        if not (allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV) == "1"):
            raise WeightsError(
                f"weights '{name}' not found: expected the file {entry['file']} in {folder} "
                f"(set weights_dir / ${ENV_VAR} to change the folder). Get it from {url} and put it there, "
                f"or rerun with --allow-download (allow_download: true) to fetch it."
                + (f" License: {entry['license']}." if entry.get("license") else "")
            )
        if not url:
            raise WeightsError(
                f"weights '{name}': {path} is missing and the manifest gives no URL to fetch it"
            )
        _download(url, path, entry, name)
        try:
            verify_file(path, entry, name)
        except WeightsError:
            path.unlink(missing_ok=True)  # never leave an unverified download behind
            raise
        return path
    verify_file(path, entry, name)
    return path


@dataclass(frozen=True)
class WeightSource:
    """Where pretrained weight files come from: the folder, whether a missing file may be fetched, the manifest.

    ``WeightSource()`` is the default everywhere: ``$PARAGONSR_WEIGHTS`` or the user cache, no download (unless
    ``$PARAGONSR_ALLOW_DOWNLOAD=1``), the bundled manifest. Losses and metrics keep ``weights_dir``,
    ``allow_download`` and ``manifest`` as their option keys and build one of these from them.

    Attributes:
        weights_dir: folder of the weight files (None: ``$PARAGONSR_WEIGHTS`` or ``~/.cache/paragonsr/weights``).
        allow_download: fetch a missing file from its manifest URL (checked against its SHA-256).
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

        return dict(load_file(str(path)))
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load weights from {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m paragonsr.weights", description="Check or fetch pretrained weights."
    )
    ap.add_argument("names", nargs="*", help="manifest entries (default: list them)")
    ap.add_argument(
        "--weights-dir", default=None, help=f"folder (default ${ENV_VAR} or ~/.cache/paragonsr/weights)"
    )
    ap.add_argument("--allow-download", action="store_true", help="fetch missing files from their URL")
    ap.add_argument("--manifest", default=None, help="another manifest JSON")
    args = ap.parse_args(argv)
    entries = load_manifest(args.manifest)
    if not args.names:
        for name, e in sorted(entries.items()):
            print(f"{name:<16}{e['file']:<32}{e.get('license', '')}")
        return 0
    source = WeightSource(args.weights_dir, args.allow_download, args.manifest)
    failed = 0
    for name in args.names:
        try:
            path = source.resolve(name)
            print(f"{name}: {path} sha256={sha256_file(path)}")
        except WeightsError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
