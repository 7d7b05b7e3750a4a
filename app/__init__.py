"""pipnet-live desktop app: a thin PySide6 layer over pipnet_core."""
