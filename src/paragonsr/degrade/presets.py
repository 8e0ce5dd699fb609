"""The six built-in realistic workflow sequences and their distribution (10 % clean, then 15/15/15/15/15/25 %).

Noise σ is in 0-255 units at mid grey (σ 0.5-2 for professional and 2-8 for phone sensors).
``configs/degradations/workflows_presets.yml`` is the same data as YAML (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

P_CLEAN = 0.1
_DOWN = {"op": "downscale", "kernel": ["area", "bicubic", "lanczos3", "magic_sharp_2021"]}

# Professional body + good lens: slight optical blur, clean sensor, mild in-camera sharpening, high-quality JPEG.
_PRO: list[dict[str, Any]] = [
    {"op": "lens_blur", "radius": [0.3, 1.0], "prob": 0.5},
    {"op": "gaussian_blur", "sigma": [0.2, 0.6], "prob": 0.5},
    _DOWN,
    {"op": "sensor_noise", "sigma": [0.5, 2.0], "shot_ratio": [0.3, 0.7]},
    {"op": "sharpen", "amount": [1.02, 1.1]},
    {"op": "jpeg", "quality": [90, 98], "subsampling": ["444", "420"]},
]
# Phone: wide-angle distortion, lateral CA, rolling shutter and hand shake, noisy small sensor, heavy AI sharpening.
_PHONE: list[dict[str, Any]] = [
    {"op": "lens_distortion", "k1": [0.01, 0.06], "prob": 0.7},
    {"op": "chromatic_aberration", "shift": [0.001, 0.004], "prob": 0.6},
    {"op": "rolling_shutter", "shift": [-0.02, 0.02], "wobble": [0.0, 0.002], "prob": 0.3},
    {"op": "motion_blur", "length": [1.0, 5.0], "prob": 0.5},
    {"op": "gaussian_blur", "sigma": [0.3, 0.9], "prob": 0.5},
    _DOWN,
    {"op": "sensor_noise", "sigma": [2.0, 8.0], "shot_ratio": [0.4, 0.8], "gray_prob": 0.3},
    {"op": "sharpen", "amount": [1.2, 1.6], "sigma": [0.8, 1.5]},
    {"op": "jpeg", "quality": [80, 95]},
]
_USER_FILTERS: list[dict[str, Any]] = [
    {"op": "contrast", "factor": [0.95, 1.15], "prob": 0.5},
    {"op": "saturation", "factor": [0.95, 1.25], "prob": 0.5},
    {"op": "temperature", "shift": [-0.04, 0.04], "prob": 0.3},
]

PRESETS: dict[str, dict[str, Any]] = {
    "professional_camera": {"probability": 0.15, "steps": _PRO},
    "professional_to_internet": {
        "probability": 0.15,
        "steps": [
            *_PRO,
            {"op": "resize", "scale": [0.6, 0.95], "kernel": ["bicubic", "bilinear", "area"]},
            {"op": "jpeg", "quality": [75, 92]},
        ],
    },
    "professional_to_social": {
        "probability": 0.15,
        "steps": [
            *_PRO,
            {"op": "sharpen", "amount": [1.05, 1.3]},  # user editing
            {"op": "lens_distortion", "k1": [-0.02, 0.02], "prob": 0.5},  # platform distortion correction
            {"op": "webp", "quality": [60, 85]},  # social media compression
            {"op": "sharpen", "amount": [1.1, 1.4]},  # platform sharpening
            {"op": "reupload", "cycles": [1, 3]},  # re-upload cycles
            {"op": "jpeg", "quality": [60, 85]},  # final compression damage
        ],
    },
    "phone_camera": {"probability": 0.15, "steps": _PHONE},
    "phone_to_internet": {
        "probability": 0.15,
        "steps": [
            *_PHONE,
            {"op": "resize", "scale": [0.5, 0.9], "kernel": ["bicubic", "bilinear", "area"]},
            {"op": "jpeg", "quality": [70, 90]},
        ],
    },
    "phone_to_social": {
        "probability": 0.25,
        "steps": [
            *_PHONE,
            *_USER_FILTERS,
            {"op": "compress", "format": ["webp", "jpeg"], "quality": [60, 85]},
            {"op": "reupload", "cycles": [1, 3], "sharpen": [1.0, 1.3]},
            {"op": "jpeg", "quality": [55, 80]},
        ],
    },
}
