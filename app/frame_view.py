"""The live view: the newest annotated frame scaled into the widget, and the FPS over it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QWidget


def to_qimage(bgr: np.ndarray) -> QImage:
    h, w = bgr.shape[:2]
    return QImage(bgr.data, w, h, bgr.strides[0], QImage.Format.Format_BGR888).copy()


class FrameView(QWidget):
    """The annotated frame, scaled to fit with its aspect ratio, with the FPS in a corner."""

    def __init__(self):
        super().__init__()
        self.setMinimumSize(320, 240)
        self.image: QImage | None = None
        self.fps_text = ""
        self.placeholder = "Starting..."

    def show_frame(self, bgr: np.ndarray, fps_text: str) -> None:
        self.image, self.fps_text = to_qimage(bgr), fps_text
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(25, 25, 28))
        if self.image is None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        scaled = self.image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x, y = (self.width() - scaled.width()) // 2, (self.height() - scaled.height()) // 2
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(self.rect().adjusted(x, y, -x, -y), self.image)
        if self.fps_text:
            painter.setFont(QFont("monospace", 11, QFont.Weight.Bold))
            box = painter.fontMetrics().boundingRect(self.fps_text).adjusted(-6, -4, 6, 4)
            box.moveTopLeft(QPoint(x + 8, y + 8))
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor(120, 255, 120))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.fps_text)
