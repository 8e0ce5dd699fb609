"""Inference: image I/O, tiling, backends (torch, resamplers, ONNX Runtime) and the upscale pipeline."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from paragonsr.infer.backends import Backend, ResamplerBackend, TorchBackend, load_backend
from paragonsr.infer.image_io import ImageInfo, ImageReadError, read_image, write_image
from paragonsr.infer.tiling import tiled_forward
from paragonsr.infer.upscale import Upscaler, upscale_image


def sample_images() -> list[Path]:
    """Paths of the bundled low-resolution sample images (CC0/CC-BY crops, credits in CREDITS.md beside them)."""
    folder = resources.files("paragonsr") / "assets" / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.lower().endswith(".png"))


def default_model_path() -> Path | None:
    """The packaged default model (``paragonsr/assets/models/default.safetensors``) if this install has one."""
    path = Path(str(resources.files("paragonsr") / "assets" / "models" / "default.safetensors"))
    return path if path.is_file() else None


__all__ = [
    "Backend",
    "ImageInfo",
    "ImageReadError",
    "ResamplerBackend",
    "TorchBackend",
    "Upscaler",
    "default_model_path",
    "load_backend",
    "read_image",
    "sample_images",
    "tiled_forward",
    "upscale_image",
    "write_image",
]
