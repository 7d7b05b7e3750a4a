"""What holds resources (ONNX Runtime sessions and their threads, MediaPipe graphs) closes them:
``close()``, or ``with`` for a block."""

from __future__ import annotations


class Closing:
    """``with thing:`` closes it at the end; ``close()`` does the same at any time."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
