"""Package data: the shipped landmark model and the detector box calibration. Installed as
``pipnet_core.models`` and found through ``importlib.resources`` (see pipnet_core/io/resources.py)."""
