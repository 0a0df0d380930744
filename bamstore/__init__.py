"""bamstore: many BAM files into one Zarr store of per-base coverage."""

__version__ = "0.1.0"
