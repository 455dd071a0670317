"""Expression data sets and their Lightning data modules."""

from fer.data.datamodule import FER2013DataModule
from fer.data.fer2013 import CLASS_NAMES, FER2013, FER2013FormatError, load_fer2013

__all__ = ["CLASS_NAMES", "FER2013", "FER2013DataModule", "FER2013FormatError", "load_fer2013"]
