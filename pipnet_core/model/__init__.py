"""The landmark network: what every runner offers, the PIPNet codec, and ONNX Runtime."""
