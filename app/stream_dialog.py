"""Output > Stream: the streams of `pipnet live` (OSC, VMC, Lab Streaming Layer, WebSocket) from the app."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit

from pipnet_core.stream.command import StreamChoice

# What each stream is, what its text field holds, and the value it starts with.
STREAMS = {
    "osc": ("OSC to", "HOST:PORT", "127.0.0.1:9000"),
    "vmc": ("VMC to", "HOST:PORT", "127.0.0.1:39540"),
    "lsl": ("LSL outlet", "stream name", "pipnet-live"),
    "ws": ("WebSocket on", "[HOST:]PORT", "8765"),
}


class StreamDialog(QDialog):
    """One row a stream: a check box to send it, a field for where. ``choice()`` is what was set."""

    def __init__(self, parent, choice: StreamChoice, texts: dict[str, str]):
        super().__init__(parent)
        self.setWindowTitle("Stream landmarks")
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "Send every processed frame to other programs (docs/streaming.md).\n"
                "WebSocket: open http://127.0.0.1:PORT/ in a browser for a live view."
            )
        )
        self.boxes: dict[str, QCheckBox] = {}
        self.fields: dict[str, QLineEdit] = {}
        for name, (label, hint, default) in STREAMS.items():
            on = bool(getattr(choice, name))
            self.boxes[name] = QCheckBox(label, checked=on)
            self.fields[name] = QLineEdit(getattr(choice, name) or texts.get(name) or default, placeholderText=hint)
            form.addRow(self.boxes[name], self.fields[name])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def texts(self) -> dict[str, str]:
        return {name: field.text().strip() for name, field in self.fields.items()}

    def choice(self) -> StreamChoice:
        texts = self.texts()
        return StreamChoice(**{name: texts[name] or None for name, box in self.boxes.items() if box.isChecked()})
