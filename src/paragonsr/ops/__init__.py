"""Image operations, below every other area of the package: resampling (:mod:`~paragonsr.ops.resample`, the
MATLAB ``imresize`` in :mod:`~paragonsr.ops.imresize`), filters (:mod:`~paragonsr.ops.filters`) and colour maths
(:mod:`~paragonsr.ops.colour`).

Plain functions; tensors are batch-first ``(B, C, H, W)`` (or any ``(..., H, W)``), numpy images HWC. This package
imports nothing from the rest of paragonsr except ``paragonsr.errors`` and ``paragonsr.utils``.
"""
