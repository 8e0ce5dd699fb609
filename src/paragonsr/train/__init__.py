"""Training engine: typed options (:mod:`options`, :mod:`option_io`), SR and GAN models, EMA, resumable
training state, validation, logging and DDP. Entry point: :func:`paragonsr.train.trainer.train_pipeline`
(``paragonsr train -opt file.yml``)."""

from __future__ import annotations

from paragonsr.train.option_io import OptionError, load_options, parse_options
from paragonsr.train.options import Options

__all__ = ["OptionError", "Options", "load_options", "parse_options"]
