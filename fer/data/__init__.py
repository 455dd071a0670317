"""Expression data sets and their Lightning data modules: one file a data set.

Configs name the data modules as ``fer.data.<Name>``. Data modules know no model: they
give batches and an :attr:`~fer.data.base.InMemoryDataModule.input_spec` that the
training builder hands to the network.
"""

from fer.data.baum2 import BAUM2DataModule
from fer.data.ckplus import CKPlusDataModule
from fer.data.combined import CombinedDataModule
from fer.data.fer2013 import CLASS_NAMES, FER2013, FER2013DataModule, FER2013FormatError, load_fer2013
from fer.data.ferplus import FERPlusDataModule
from fer.data.landmark_features import LandmarkFeatureDataModule

__all__ = [
    "CLASS_NAMES",
    "FER2013",
    "BAUM2DataModule",
    "CKPlusDataModule",
    "CombinedDataModule",
    "FER2013DataModule",
    "FER2013FormatError",
    "FERPlusDataModule",
    "LandmarkFeatureDataModule",
    "load_fer2013",
]
