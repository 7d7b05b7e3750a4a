"""The package's version, in a module of its own: the files a run writes record it, and modules
at every level can import it without importing the whole package (``pipnet_core/__init__``)."""

__version__ = "0.1.0"
