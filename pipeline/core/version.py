"""The package version, in one place: the package facade and the run manifests read it."""

__version__ = "0.1.0"
