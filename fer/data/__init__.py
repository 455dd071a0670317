"""Expression data sets and their Lightning data modules: one file a data set.

Configs name the data modules as ``fer.data.<Name>``. Data modules know no model: they
give batches and an :attr:`~fer.data.base.InMemoryDataModule.input_spec` that the
training builder hands to the network.
"""

from importlib import import_module

#: Public names and the file of each: imported on first use, so that reading FER-2013's files
#: (:mod:`fer.data.fer2013_files`) loads no Lightning.
_HOMES = {
    "BAUM2DataModule": "baum2",
    "BAUM2FramesDataModule": "baum2",
    "CKPlusDataModule": "ckplus",
    "CombinedDataModule": "combined",
    "CLASS_NAMES": "fer2013_files",
    "FER2013": "fer2013_files",
    "FER2013FormatError": "fer2013_files",
    "load_fer2013": "fer2013_files",
    "FER2013DataModule": "fer2013",
    "FERPlusDataModule": "ferplus",
    "LandmarkFeatureDataModule": "landmark_features",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'fer.data' has no attribute {name!r}")
    return getattr(import_module(f"fer.data.{_HOMES[name]}"), name)


__all__ = [
    "CLASS_NAMES",
    "FER2013",
    "BAUM2DataModule",
    "BAUM2FramesDataModule",
    "CKPlusDataModule",
    "CombinedDataModule",
    "FER2013DataModule",
    "FER2013FormatError",
    "FERPlusDataModule",
    "LandmarkFeatureDataModule",
    "load_fer2013",
]
