"""The torch side: network, training, self-training, export. Nothing in the runtime imports it;
it needs the ``[train]`` extra (torch, onnx, matplotlib)."""
