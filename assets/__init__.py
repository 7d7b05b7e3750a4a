"""Package data the app ships besides the model: the sample clip's source photo and the app icon.
Installed as ``pipnet_core.assets`` and found through ``importlib.resources``."""
