"""The library's version: one place, read by the package metadata and written into every result's provenance."""

__version__ = "0.2.0"
