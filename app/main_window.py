"""The main window: live view, sources, overlay options, status bar, recording and export."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from pipnet_core import OverlayOptions, __version__
from pipnet_core.io.frames import CameraFormat, CameraInfo, list_cameras
from pipnet_core.io.media import dialog_filter
from pipnet_core.io.resources import asset, models_dir
from pipnet_core.stream.command import StreamChoice

from .choices import DETECTOR_LABELS, FRAME_RATES, OVERLAY_KEYS, OVERLAY_LABELS, RESOLUTIONS
from .frame_view import FrameView, to_qimage
from .stream_dialog import STREAMS, StreamDialog
from .worker import (
    SAMPLE_CLIP,
    ApplySettings,
    Export,
    OpenSource,
    ProcessingWorker,
    Record,
    SetPaused,
    SetStreams,
    Settings,
)

VIDEO_FILTER = dialog_filter("video")
THRESHOLD_DEBOUNCE_MS = 300  # the detector threshold is applied once its spin box rests this long
IMAGE_FILTER = dialog_filter("image")
STALE_SECONDS = 1.5  # no frame for this long: the view says so instead of showing a frozen FPS


class MainWindow(QMainWindow):
    cameras_listed = Signal(list)  # emitted from the listing thread, received on the UI thread

    def __init__(self, source: str | int | None = None, camera_lister=list_cameras):
        super().__init__()
        self.setWindowTitle("pipnet-live: 68 facial landmarks")
        self.setWindowIcon(QIcon(str(asset("icon.png"))))
        self.store = QSettings("pipnet-live", "pipnet-live")
        self.settings = self._load_settings()
        self.worker = ProcessingWorker(self.settings)
        self.worker.frame_ready.connect(self._on_frame)
        self.worker.error.connect(self.show_error)
        self.worker.source_opened.connect(self._on_source_opened)
        self.worker.source_state.connect(self._on_source_state)
        self.worker.settings_applied.connect(self._on_settings_applied)
        self.worker.model_loaded.connect(self._on_model_loaded)
        self.worker.output_stopped.connect(self._on_output_stopped)
        self.worker.stream_status.connect(self._on_stream_status)
        self.cameras_listed.connect(self._on_cameras_listed)
        self.camera_lister = camera_lister
        self.current_source: str | int | None = None
        self.camera_lost = False
        self.model_description: dict = {}
        self.last_stats: dict = {}
        self.last_frame_time = 0.0

        self.view = FrameView()
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background:#7a1f1f;color:white;padding:6px;font-weight:bold")
        self.banner.hide()
        self._banner_timer = QTimer(self, singleShot=True, interval=10000, timeout=self.banner.hide)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.view, 1)
        self.setCentralWidget(central)

        self._build_actions()
        self._build_options_dock()
        self._build_status_bar()
        self._restore_window()
        self.streams, self.stream_texts = self._load_streams()
        self.worker.start()
        if self.streams:
            self.worker.post(SetStreams(self.streams))
        self._staleness = QTimer(self, interval=500, timeout=self._check_stale)
        self._staleness.start()
        self._initial_source = source
        self.refresh_cameras()

    # -- settings -------------------------------------------------------------------------------------
    def _load_settings(self) -> Settings:
        s = self.store
        overlay = OverlayOptions(
            **{k: s.value(f"overlay/{k}", getattr(OverlayOptions(), k), type=bool) for k in OVERLAY_LABELS}
        )
        detector = s.value("detector", "blazeface", type=str)
        return Settings(
            overlay,
            s.value("smoothing", True, type=bool),
            s.value("smoothing_strength", 0.5, type=float),
            detector if detector in DETECTOR_LABELS else "blazeface",
            s.value("detector_threshold", 0.5, type=float),
            s.value("max_faces", 1, type=int),
            s.value("model_path", "", type=str),
        )

    def _save_settings(self) -> None:
        s, st = self.store, self.settings
        for key in OVERLAY_LABELS:
            s.setValue(f"overlay/{key}", getattr(st.overlay, key))
        for key in ("smoothing", "smoothing_strength", "detector", "detector_threshold", "max_faces", "model_path"):
            s.setValue(key, getattr(st, key))
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())

    def _restore_window(self) -> None:
        geometry = self.store.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 680)
        state = self.store.value("window_state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def change_settings(self, **changes) -> None:
        self.settings = replace(self.settings, **changes)
        self.worker.post(ApplySettings(self.settings))

    def set_overlay(self, **changes) -> None:
        self.change_settings(overlay=replace(self.settings.overlay, **changes))

    # -- building the window --------------------------------------------------------------------------
    def _action(self, text: str, shortcut: str | None, slot, checkable: bool = False) -> QAction:
        action = QAction(text, self, checkable=checkable)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = QToolBar("Source", objectName="source_toolbar")
        self.addToolBar(bar)
        self.camera_box = QComboBox(toolTip="The cameras of this machine")
        self.camera_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.camera_box.activated.connect(lambda i: self.open_source(self.camera_box.itemData(i)))
        self.resolution_box = QComboBox(toolTip="Resolution to ask the camera for")
        self.resolution_box.addItems(list(RESOLUTIONS))
        self.rate_box = QComboBox(toolTip="Frame rate to ask the camera for")
        self.rate_box.addItems(list(FRAME_RATES))
        for box in (self.resolution_box, self.rate_box):
            box.activated.connect(lambda _: self._reopen_camera())
        for widget in (QLabel(" Camera "), self.camera_box, self.resolution_box, self.rate_box):
            bar.addWidget(widget)
        self.actions_by_name = {
            "refresh": self._action("Find cameras", "F5", self.refresh_cameras),
            "video": self._action("Open video...", "Ctrl+O", self.choose_video),
            "image": self._action("Open image...", "Ctrl+I", self.choose_image),
            "sample": self._action("Sample clip", "Ctrl+D", lambda: self.open_source(SAMPLE_CLIP)),
            "pause": self._action("Pause", "Space", self.toggle_pause, checkable=True),
            "loop": self._action(
                "Loop",
                "Ctrl+L",
                lambda on: self.open_source(self.current_source) if self.current_source is not None else None,
                checkable=True,
            ),
            "screenshot": self._action("Screenshot", "Ctrl+S", self.choose_screenshot),
            "record": self._action("Record video", "Ctrl+R", self.toggle_recording, checkable=True),
            "export": self._action("Export landmarks", "Ctrl+E", self.toggle_export, checkable=True),
            "stream": self._action("Stream...", "Ctrl+T", self.choose_streams),
            "quit": self._action("Quit", "Ctrl+Q", self.close),
            "about": self._action("About pipnet-live", None, self.show_about),
        }
        self.actions_by_name["loop"].setChecked(True)
        for name in ("video", "image", "sample", "pause", "screenshot", "record", "export"):
            bar.addAction(self.actions_by_name[name])
        menus = {
            "&Source": ("refresh", "video", "image", "sample", None, "pause", "loop", None, "quit"),
            "&Output": ("screenshot", "record", "export", None, "stream"),
            "&Help": ("about",),
        }
        for title, names in menus.items():
            menu = self.menuBar().addMenu(title)
            for name in names:
                menu.addSeparator() if name is None else menu.addAction(self.actions_by_name[name])

    def _build_options_dock(self) -> None:
        dock = QDockWidget("Overlay and tracking", self, objectName="options_dock")
        panel = QWidget()
        form = QFormLayout(panel)
        self.overlay_boxes: dict[str, QCheckBox] = {}
        for key, label in OVERLAY_LABELS.items():
            box = QCheckBox(f"{label}  ({OVERLAY_KEYS[key]})", checked=getattr(self.settings.overlay, key))
            box.setShortcut(QKeySequence(OVERLAY_KEYS[key]))
            box.toggled.connect(lambda on, key=key: self.set_overlay(**{key: on}))
            form.addRow(box)
            self.overlay_boxes[key] = box
        self.smoothing_box = QCheckBox("Smoothing  (M)", checked=self.settings.smoothing)
        self.smoothing_box.setShortcut(QKeySequence("M"))
        self.smoothing_box.toggled.connect(lambda on: self.change_settings(smoothing=on))
        form.addRow(self.smoothing_box)
        self.strength = QSlider(
            Qt.Orientation.Horizontal, minimum=0, maximum=100, value=int(100 * self.settings.smoothing_strength)
        )
        self.strength.valueChanged.connect(lambda v: self.change_settings(smoothing_strength=v / 100))
        form.addRow("Strength", self.strength)
        self.detector_box = QComboBox()
        for name, label in DETECTOR_LABELS.items():
            self.detector_box.addItem(label, name)
        self.detector_box.setCurrentIndex(list(DETECTOR_LABELS).index(self.settings.detector))
        self.detector_box.activated.connect(lambda i: self.change_settings(detector=self.detector_box.itemData(i)))
        form.addRow("Face detector", self.detector_box)
        # BlazeFace's graphs decode no score below 0.5 (short range) or 0.6 (full): lower finds nothing more.
        self.threshold = QDoubleSpinBox(
            minimum=0.5, maximum=0.95, singleStep=0.05, value=self.settings.detector_threshold
        )
        # Applied once the spin box rests: a run of steps is one change, not one detector per step.
        self._threshold_timer = QTimer(
            self,
            singleShot=True,
            interval=THRESHOLD_DEBOUNCE_MS,
            timeout=lambda: self.change_settings(detector_threshold=round(self.threshold.value(), 2)),
        )
        self.threshold.valueChanged.connect(lambda _: self._threshold_timer.start())
        form.addRow("Detector threshold", self.threshold)
        self.max_faces = QSpinBox(minimum=1, maximum=8, value=self.settings.max_faces)
        self.max_faces.valueChanged.connect(lambda v: self.change_settings(max_faces=v))
        form.addRow("Maximum faces", self.max_faces)
        self.model_box = QComboBox()
        self._fill_models()
        self.model_box.activated.connect(self._on_model_chosen)
        form.addRow("Model", self.model_box)
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _fill_models(self) -> None:
        self.model_box.clear()
        self.model_box.addItem("shipped model", "")
        folder = models_dir()
        for path in sorted(folder.rglob("*.onnx")):
            self.model_box.addItem(str(path.relative_to(folder)), str(path))
        if self.settings.model_path and self.model_box.findData(self.settings.model_path) < 0:
            self.model_box.addItem(Path(self.settings.model_path).name, self.settings.model_path)
        self.model_box.addItem("Other...", None)
        self.model_box.setCurrentIndex(max(self.model_box.findData(self.settings.model_path), 0))

    def _build_status_bar(self) -> None:
        self.status = QLabel()
        self.stream_status = QLabel()  # the streams: clients, messages per second, drops
        self.statusBar().addPermanentWidget(self.stream_status)
        self.statusBar().addPermanentWidget(self.status)

    # -- streams ---------------------------------------------------------------------------------------
    def _load_streams(self) -> tuple[StreamChoice, dict[str, str]]:
        """The streams that were on at the last close, and the last text of each field."""
        texts = {name: self.store.value(f"stream/{name}", "", type=str) for name in STREAMS}
        on = {name: texts[name] for name in STREAMS if self.store.value(f"stream/{name}_on", False, type=bool)}
        return StreamChoice(**{name: text for name, text in on.items() if text}), texts

    def set_streams(self, choice: StreamChoice, texts: dict[str, str] | None = None) -> None:
        self.streams = choice
        self.stream_texts.update(texts or {name: getattr(choice, name) for name in STREAMS if getattr(choice, name)})
        for name in STREAMS:
            self.store.setValue(f"stream/{name}", self.stream_texts.get(name, ""))
            self.store.setValue(f"stream/{name}_on", bool(getattr(choice, name)))
        self.worker.post(SetStreams(choice))

    def choose_streams(self) -> None:
        dialog = StreamDialog(self, self.streams, self.stream_texts)
        if dialog.exec():
            self.set_streams(dialog.choice(), dialog.texts())

    def _on_stream_status(self, text: str) -> None:
        self.stream_status.setText(text)

    # -- sources ---------------------------------------------------------------------------------------
    def refresh_cameras(self) -> None:
        """List the cameras on a helper thread (probing can take seconds on some platforms)."""

        def list_them() -> None:
            try:
                cameras = self.camera_lister()
            except Exception as exc:  # a platform quirk must not leave the window waiting
                self.worker.error.emit(f"Cameras could not be listed: {exc}")
                cameras = []
            self.cameras_listed.emit(cameras)

        threading.Thread(target=list_them, daemon=True, name="camera list").start()

    def _on_cameras_listed(self, cameras: list[CameraInfo]) -> None:
        self.camera_box.clear()
        for camera in cameras:
            self.camera_box.addItem(camera.name, camera.index)
        if not cameras:
            self.camera_box.addItem("no camera found", None)
        if self._initial_source is not None:
            self.open_source(self._initial_source)
        elif self.current_source is None and cameras:
            self.open_source(cameras[0].index, fallback_to_sample=True)
        elif self.current_source is None:
            self.view.placeholder = "Preparing the sample clip..."
            self.view.update()
            self.show_error(
                "No camera found: playing a sample clip instead (open a camera, video or image from the toolbar)."
            )
            self.open_source(SAMPLE_CLIP)
        self._initial_source = None

    def camera_format(self) -> CameraFormat:
        width, height = RESOLUTIONS[self.resolution_box.currentText()]
        return CameraFormat(width, height, FRAME_RATES[self.rate_box.currentText()])

    def _reopen_camera(self) -> None:
        if isinstance(self.current_source, int):
            self.open_source(self.current_source)

    def open_source(self, target, fallback_to_sample: bool = False) -> None:
        """Ask the worker to open a camera index, a video, an image or SAMPLE_CLIP; problems come
        back as banner messages, success as the window title."""
        if target is None:
            return
        self.current_source = target
        name = self.camera_box.itemText(self.camera_box.findData(target)) if isinstance(target, int) else ""
        self.worker.post(
            OpenSource(target, name, self.actions_by_name["loop"].isChecked(), self.camera_format(), fallback_to_sample)
        )
        self.actions_by_name["pause"].setChecked(False)

    def _on_source_opened(self, name: str) -> None:
        self.camera_lost = False
        self.setWindowTitle(f"pipnet-live: {Path(name).name if not name.startswith('camera') else name}")

    def _on_source_state(self, state: str, message: str) -> None:
        if state == "lost":
            self.camera_lost = True
            self.show_error(message, sticky=True)
        elif state == "live":
            self.camera_lost = False
            self.banner.hide()
            self.statusBar().showMessage(message, 5000)
        else:
            self.statusBar().showMessage(message, 5000)

    def choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", "", VIDEO_FILTER)
        if path:
            self.open_source(path)

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", "", IMAGE_FILTER)
        if path:
            self.open_source(path)

    def toggle_pause(self, paused: bool) -> None:
        self.worker.post(SetPaused(paused))

    def _on_model_chosen(self, index: int) -> None:
        path = self.model_box.itemData(index)
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Choose a PIPNet ONNX model", str(models_dir()), "ONNX models (*.onnx)"
            )
            if not path:
                self.model_box.setCurrentIndex(max(self.model_box.findData(self.settings.model_path), 0))
                return
        self.change_settings(model_path=path)

    # -- outputs -----------------------------------------------------------------------------------------
    def save_screenshot(self, path: str | Path) -> bool:
        """The annotated frame at full resolution (not the scaled view)."""
        last = self.worker.last
        if last is None:
            self.show_error("Nothing to save yet")
            return False
        if not to_qimage(last.annotated).save(str(path)):
            self.show_error(f"{path}: cannot save the screenshot there")
            return False
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def choose_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "pipnet-live.png", "PNG images (*.png)")
        if path:
            self.save_screenshot(path)

    def toggle_recording(self, on: bool) -> None:
        if not on:
            self.worker.post(Record(None))
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Record the annotated view", "pipnet-live.mp4", "Videos (*.mp4 *.avi)"
        )
        if path:
            self.worker.post(Record(Path(path)))
        else:
            self.actions_by_name["record"].setChecked(False)

    def toggle_export(self, on: bool) -> None:
        if not on:
            self.worker.post(Export(None))
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export landmarks", "landmarks.csv", "CSV (*.csv);;JSON Lines (*.jsonl)"
        )
        if path:
            self.worker.post(Export(Path(path)))
        else:
            self.actions_by_name["export"].setChecked(False)

    def _on_output_stopped(self, kind: str, why: str) -> None:
        """The worker closed a recording or an export (it failed, or the source changed)."""
        self.actions_by_name[kind].setChecked(False)  # not ``triggered``: the worker is not asked again
        self.show_error(why)

    # -- feedback -------------------------------------------------------------------------------------------
    def show_error(self, message: str, sticky: bool = False) -> None:
        """A red banner above the view; it hides after 10 s unless ``sticky`` (a lost camera)."""
        self.banner.setText(message)
        self.banner.show()
        if sticky:
            self._banner_timer.stop()
        else:
            self._banner_timer.start()

    def show_about(self) -> None:
        d = self.model_description
        QMessageBox.about(
            self,
            "About pipnet-live",
            (
                f"<b>pipnet-live {__version__}</b><br>68 facial landmarks in real time: PIPNet (Jin, Liao and Shao, "
                "IJCV 2021) through ONNX Runtime, BlazeFace detection, PySide6.<br><br>"
                f"<b>Model</b> {d.get('model', '?')} {d.get('model_version', '')} {d.get('model_precision', '')} "
                f"({d.get('backbone', '?')}, input "
                f"{d.get('input_size', '?')}, {d.get('landmarks', '')})<br>exported {d.get('created') or '?'}; trained on "
                f"{d.get('training_data') or '?'}<br>licence: {d.get('licence') or '?'}<br>"
                f"<small>{d.get('model_file', '')}<br>sha256 {d.get('model_sha256', '')}</small>"
            ),
        )

    def _on_model_loaded(self, description: dict) -> None:
        self.model_description = description

    def _on_settings_applied(self, applied: Settings) -> None:
        """The worker may keep the old model when a new one fails to load: show and save what is in force."""
        if applied.model_path != self.settings.model_path:
            self.settings = replace(self.settings, model_path=applied.model_path)
            self._fill_models()

    def _check_stale(self) -> None:
        if self.last_frame_time and time.monotonic() - self.last_frame_time > STALE_SECONDS and self.view.fps_text:
            self.view.fps_text = "camera lost" if self.camera_lost else ""
            self.view.update()

    def _on_frame(self, annotated: np.ndarray, stats: dict) -> None:
        self.last_stats = stats
        self.last_frame_time = time.monotonic()
        self.view.show_frame(annotated, f"{stats['process_fps']:.0f} FPS")
        stages = " ".join(f"{k} {v:.1f}" for k, v in stats["stages"].items())
        self.status.setText(
            f"capture {stats['capture_fps']:.1f} FPS | processing {stats['process_fps']:.1f} FPS | "
            f"{stats['faces']} face(s) | {stats['detector']} | ms: {stages}"
        )

    def closeEvent(self, event) -> None:
        self._save_settings()
        self.worker.stop()
        super().closeEvent(event)
