"""TumorSeg: brain tumour (glioma) segmentation from T1, T1c, T2 and FLAIR MRI."""

from .version import __version__

__all__ = ["__version__"]
