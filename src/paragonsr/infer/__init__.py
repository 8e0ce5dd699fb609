"""Inference: backends (torch, resamplers, ONNX Runtime) and the upscale pipeline (tiles: paragonsr.tiling)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from paragonsr.infer.backends import Backend, ResamplerBackend, TorchBackend, load_backend
from paragonsr.infer.upscale import Upscaler, upscale_image
from paragonsr.tiling import tiled_forward  # re-exported: the tiler lives in paragonsr.tiling


def sample_images() -> list[Path]:
    """Paths of the bundled low-resolution sample images (CC0/CC-BY crops, credits in CREDITS.md beside them)."""
    folder = resources.files("paragonsr") / "assets" / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.lower().endswith(".png"))


def default_model_path(name: str = "default.safetensors") -> Path | None:
    """A packaged model (default: the fused default model used by ``upscale`` and ``demo``), checked against the
    sha256 recorded in ``assets/models/manifest.json``; ``None`` if this install has none."""
    import hashlib
    import json

    folder = Path(str(resources.files("paragonsr") / "assets" / "models"))
    path = folder / name
    if not path.is_file():
        return None
    manifest = folder / "manifest.json"
    if manifest.is_file():
        want = json.loads(manifest.read_text()).get(name, {}).get("sha256")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if want and got != want:
            raise RuntimeError(
                f"packaged model {path} is damaged (sha256 {got}, expected {want}); reinstall paragonsr"
            )
    return path


PACKAGED_MODELS = {
    "default": "default.safetensors",
    "classic": "classic.safetensors",
    "perceptual": "perceptual.safetensors",
}
# packaged models trained with an adversarial/perceptual objective: their INT8 gate also bounds LPIPS
PERCEPTUAL_MODELS = frozenset({"perceptual"})


def packaged_model(name: str, unfused: bool = False) -> Path:
    """``--model`` value -> file: a packaged model's short name (``default``: the realistic 2x ParagonSR2 nano that
    ``upscale`` uses; ``classic``: the 2x nano trained on bicubic LR only, for the standard benchmark;
    ``perceptual``: ``default`` fine-tuned with LPIPS + GAN losses, see docs/perceptual_nano.md) unless a file of
    that name exists; anything else is a path. ``unfused``: the trainable twin (``<name>_unfused.safetensors``)
    instead of the fused release file, e.g. for ``paragonsr export``, which fuses and gates it again.

    Raises:
        FileNotFoundError: a packaged name this install does not hold (one line naming it).
        RuntimeError: a packaged file whose sha256 differs from the manifest's.
    """
    if name not in PACKAGED_MODELS or Path(name).exists():
        return Path(name)
    file = PACKAGED_MODELS[name]
    path = default_model_path(file.replace(".safetensors", "_unfused.safetensors") if unfused else file)
    if path is None:
        raise FileNotFoundError(f"--model {name}: this install has no packaged {name} model")
    return path


__all__ = [
    "PACKAGED_MODELS",
    "PERCEPTUAL_MODELS",
    "Backend",
    "ResamplerBackend",
    "TorchBackend",
    "Upscaler",
    "default_model_path",
    "load_backend",
    "packaged_model",
    "sample_images",
    "tiled_forward",
    "upscale_image",
]
