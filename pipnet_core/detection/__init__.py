"""Where the faces are: BlazeFace through ONNX Runtime, the searches stills get, and the calibration
from detector boxes to model crops."""
