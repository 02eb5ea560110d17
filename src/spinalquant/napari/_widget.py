"""The "Analyse and review" dock widget: a thin Qt shell over the library.

Analysis is :func:`spinalquant.pipeline.analyze` run in a worker thread;
review edits use napari's own label tools (erase, paint, fill, picker) on the
result layers; Recompute and Save call :func:`spinalquant.review.recompute` and
:func:`spinalquant.review.save_review`. Nothing here measures anything.
"""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..config import Config
from ..pipeline import Results
from ._layers import (
    MARKERS,
    auto_channel_mapping,
    features_table,
    gfap_colormap,
    puncta_table,
    result_layers,
    stack_from_layers,
)

_NONE = "—"
_PARAM_HINT = (
    "# Analysis parameters (TOML). Empty = defaults. 'Defaults' shows every parameter\n"
    "# with its documentation; the channel mapping above overrides [channels].\n"
)


class AnalysisCancelled(Exception):
    """Raised inside the worker when the user pressed Cancel."""


@dataclass
class ReviewSession:
    """One image's results shown in the viewer (widget state, no Qt)."""

    image: str
    baseline: Results  # as analysed / loaded / last saved
    current: Results
    config: Config
    out_dir: str | None = None
    source: str | None = None
    overrides: dict[int, bool] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)
    points0: np.ndarray | None = None


def _fmt(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float | np.floating):
        from ..report import format_number

        return format_number(float(v))  # 34219, not 3.422e+04
    return str(v)


class SpinalquantWidget(QWidget):
    """Analyse the open image, review its objects, save into a results folder."""

    progressed = Signal(str)

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.sessions: dict[str, ReviewSession] = {}
        self._active: str | None = None
        self._worker: Any = None
        self._cancel = threading.Event()
        self._n_steps = 1
        self._build_ui()
        self.progressed.connect(self._on_progress)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._on_layers_changed()
        for layer in list(self.viewer.layers):
            self._adopt(layer)
        if self._active in self.sessions:  # a results folder opened before the widget
            self._show_summary(self.sessions[self._active])

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        self.setMinimumWidth(360)

        box = QGroupBox("Image")
        form = QFormLayout(box)
        self.source_combo = QComboBox()
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        form.addRow("image", self.source_combo)
        self.pixel_spin = QDoubleSpinBox()
        self.pixel_spin.setDecimals(4)
        self.pixel_spin.setRange(0.0, 1000.0)
        self.pixel_spin.setSuffix(" µm/px")
        self.pixel_spin.setToolTip("From the file's metadata; set it when the file has none")
        form.addRow("pixel size", self.pixel_spin)
        self.channel_combos: dict[str, QComboBox] = {}
        for m in MARKERS:
            cb = QComboBox()
            cb.setToolTip(f"Channel that carries {m.upper()} (guessed from the channel names)")
            self.channel_combos[m] = cb
            form.addRow(m.upper() if m != "nuclei" else "nuclei (DAPI)", cb)
        self.roi_combo = QComboBox()
        self.roi_combo.setToolTip("Restrict cord counts to a ventral-horn ROI")
        form.addRow("ROI", self.roi_combo)
        root.addWidget(box)

        box = QGroupBox("Parameters")
        lay = QVBoxLayout(box)
        self.params_edit = QPlainTextEdit()
        self.params_edit.setPlainText(_PARAM_HINT)
        self.params_edit.setMaximumHeight(80)
        lay.addWidget(self.params_edit)
        row = QHBoxLayout()
        for text, slot in (("Load…", self._load_params), ("Save…", self._save_params),
                           ("Defaults", self._default_params)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        lay.addLayout(row)
        root.addWidget(box)

        row = QHBoxLayout()
        self.analyse_btn = QPushButton("Analyse")
        self.analyse_btn.clicked.connect(lambda: self.analyse())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(self.analyse_btn)
        row.addWidget(self.cancel_btn)
        root.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        root.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        box = QGroupBox("Summary")
        lay = QVBoxLayout(box)
        self.summary_table = self._table(["figure", "value"])
        lay.addWidget(self.summary_table)
        root.addWidget(box)

        box = QGroupBox("Selected object")
        lay = QVBoxLayout(box)
        self.selected_label = QLabel("click an object (pan/zoom mode) or pick it with the label picker")
        self.selected_label.setWordWrap(True)
        lay.addWidget(self.selected_label)
        self.object_table = self._table(["measurement", "value"])
        lay.addWidget(self.object_table)
        root.addWidget(box)

        box = QGroupBox("Review")
        lay = QVBoxLayout(box)
        hint = QLabel("Delete / paint / fill / merge objects with napari's label tools, then "
                      "Recompute. Save writes this image into its results folder.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        row = QHBoxLayout()
        self.flip_btn = QPushButton("Flip GFAP")
        self.flip_btn.setToolTip("Toggle the GFAP call of the selected GFP+ cell")
        self.flip_btn.clicked.connect(lambda: self.flip_gfap())
        self.recompute_btn = QPushButton("Recompute")
        self.recompute_btn.clicked.connect(lambda: self.recompute())
        self.save_btn = QPushButton("Save…")
        self.save_btn.clicked.connect(lambda: self.save())
        for b in (self.flip_btn, self.recompute_btn, self.save_btn):
            row.addWidget(b)
        lay.addLayout(row)
        self.out_label = QLabel("results folder: (not saved yet)")
        self.out_label.setWordWrap(True)
        lay.addWidget(self.out_label)
        root.addWidget(box)
        root.addStretch(1)

    @staticmethod
    def _table(headers: list[str]) -> QTableWidget:
        t = QTableWidget(0, len(headers))
        t.setHorizontalHeaderLabels(headers)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        t.setEditTriggers(QTableWidget.NoEditTriggers)
        t.setMinimumHeight(170)
        return t

    @staticmethod
    def _fill(table: QTableWidget, rows: list[tuple[str, Any]]) -> None:
        table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            table.setItem(i, 0, QTableWidgetItem(str(k)))
            item = QTableWidgetItem(_fmt(v))
            item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            table.setItem(i, 1, item)

    # -------------------------------------------------------------- sources
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Image)]

    def sources(self) -> dict[str, list[Any]]:
        """Image layers grouped by the file (or shape) they belong to."""
        groups: dict[str, list[Any]] = {}
        for lyr in self._image_layers():
            meta = lyr.metadata.get("spinalquant", {})
            if meta.get("source"):
                key = meta["source"]
            else:
                key = f"layers {'x'.join(str(s) for s in lyr.data.shape[-2:])}"
                if lyr.rgb:
                    key = f"RGB layer {lyr.name}"
            groups.setdefault(key, []).append(lyr)
        for lyrs in groups.values():
            lyrs.sort(key=lambda lyr: lyr.metadata.get("spinalquant", {}).get("index", 0))
        return groups

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            self._adopt(event.value)
        current = self.source_combo.currentData()
        groups = self.sources()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for key in groups:
            label = Path(key).name if Path(key).suffix else key
            self.source_combo.addItem(label, key)
        if current in groups:
            self.source_combo.setCurrentIndex(list(groups).index(current))
        self.source_combo.blockSignals(False)
        self._on_source_changed()
        self._refresh_roi_combo()

    def _refresh_roi_combo(self) -> None:
        from napari.layers import Shapes

        current = self.roi_combo.currentText()
        self.roi_combo.clear()
        self.roi_combo.addItem("sidecar file (if any)")
        self.roi_combo.addItem("none")
        for lyr in self.viewer.layers:
            if isinstance(lyr, Shapes):
                self.roi_combo.addItem(f"layer: {lyr.name}")
        idx = self.roi_combo.findText(current)
        if idx >= 0:
            self.roi_combo.setCurrentIndex(idx)

    def _channel_names(self, layers: list[Any]) -> list[str]:
        names = []
        for lyr in layers:
            meta = lyr.metadata.get("spinalquant", {})
            names.append(str(meta.get("channel") or lyr.name))
        return names

    def _on_source_changed(self, *_: Any) -> None:
        key = self.source_combo.currentData()
        layers = self.sources().get(key, []) if key else []
        names = [] if (layers and layers[0].rgb) else self._channel_names(layers)
        auto = auto_channel_mapping(names) if names else {}
        for m, cb in self.channel_combos.items():
            cb.blockSignals(True)
            cb.clear()
            cb.addItem(_NONE)
            cb.addItems(names)
            if auto.get(m):
                cb.setCurrentText(auto[m])
            cb.setEnabled(bool(names))
            cb.blockSignals(False)
        px = None
        if layers:
            meta = layers[0].metadata.get("spinalquant", {})
            ps = meta.get("pixel_size_um")
            px = ps[1] if ps else (float(layers[0].scale[-1]) if layers[0].scale[-1] != 1 else None)
        self.pixel_spin.setValue(px or 0.0)

    def channel_mapping(self) -> dict[str, str]:
        """Marker -> channel name chosen in the widget ('' disables a marker)."""
        return {m: ("" if cb.currentText() == _NONE else cb.currentText())
                for m, cb in self.channel_combos.items() if cb.count() > 1}

    # -------------------------------------------------------------- params
    def config(self) -> Config:
        """The parameters in the text box plus the channel mapping."""
        from ..errors import ConfigError

        text = self.params_edit.toPlainText()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"parameters are not valid TOML: {exc}") from exc
        channels = dict(data.get("channels", {}))
        channels.update(self.channel_mapping())
        data["channels"] = channels
        return Config.from_dict(data, source="napari parameters")

    def _load_params(self, path: str | None = None) -> None:
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Load parameters", "", "TOML (*.toml)")
        if not path:
            return
        from ..config import load_config

        try:
            cfg = load_config(path)
        except Exception as exc:
            self._error(exc)
            return
        self.params_edit.setPlainText(Path(path).read_text(encoding="utf-8"))
        for m, name in cfg.channels.items():
            cb = self.channel_combos.get(m)
            if cb is not None and isinstance(name, str) and cb.findText(name) >= 0:
                cb.setCurrentText(name)
        self.status.setText(f"parameters loaded from {path}")

    def _save_params(self, path: str | None = None) -> None:
        from ..review import config_to_toml

        try:
            cfg = self.config()
        except Exception as exc:
            self._error(exc)
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save parameters", "spinalquant.toml",
                                                  "TOML (*.toml)")
        if not path:
            return
        Path(path).write_text(config_to_toml(cfg), encoding="utf-8")
        self.status.setText(f"parameters saved to {path}")

    def _default_params(self) -> None:
        from ..config import default_config_toml

        self.params_edit.setPlainText(default_config_toml())

    # -------------------------------------------------------------- analyse
    def current_stack(self) -> tuple[Any, str | None]:
        """The selected image as a Stack (from its layers) and its file path."""
        from ..errors import PixelSizeError

        key = self.source_combo.currentData()
        layers = self.sources().get(key, [])
        if not layers:
            raise ValueError("open an image first (File > Open, or File > Open Sample > spinalquant)")
        meta = layers[0].metadata.get("spinalquant", {})
        path = meta.get("path")
        stack = stack_from_layers([lyr.data for lyr in layers], self._channel_names(layers),
                                  scale=layers[0].scale, rgb=bool(layers[0].rgb), path=path)
        px = self.pixel_spin.value()
        # what the file says (the layers' scale is 1 when it says nothing), else the layers' scale
        z_known, yx_known = stack.pixel_size_um[0], stack.pixel_size_um[1]
        if "pixel_size_um" in meta:
            z_known, _, yx_known = (list(meta["pixel_size_um"] or []) + [None] * 3)[:3]
        elif layers[0].scale[-1] == 1:
            yx_known = None  # plain layers at napari's default scale: not a calibration
        if px > 0:
            if px != stack.pixel_size_um[1] or z_known != stack.pixel_size_um[0]:
                stack = stack.with_pixel_size((z_known, px, px))
        elif yx_known is None:
            raise PixelSizeError("the image has no pixel size: enter it (µm per pixel) above")
        return stack, path

    def _roi(self, stack: Any, path: str | None, cfg: Config) -> np.ndarray | None:
        choice = self.roi_combo.currentText()
        if choice == "none":
            return None
        if choice.startswith("layer: "):
            lyr = self.viewer.layers[choice[len("layer: "):]]
            if not np.allclose(lyr.scale[-2:], stack.pixel_size_um[1:]):
                raise ValueError(f"ROI layer {lyr.name!r} is not at the image's scale; draw it "
                                 "in a Shapes layer created while the image is open")
            return np.asarray(lyr.to_masks(mask_shape=stack.shape[2:])).any(axis=0)
        if path is None or not cfg.roi.use_sidecar:
            return None
        from ..roi import find_sidecar_roi, roi_mask

        files = find_sidecar_roi(path)
        return roi_mask(files, shape_yx=stack.shape[2:], pixel_size_um=stack.yx_um) if files else None

    def analyse(self) -> Any:
        """Start the analysis of the selected image in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        from ..pipeline import analyze, detect_section

        try:
            cfg = self.config()
            stack, path = self.current_stack()
            roi = self._roi(stack, path, cfg)
            section = detect_section(stack, cfg)
        except Exception as exc:
            self._error(exc)
            return None
        self._cancel.clear()
        self._n_steps = 1 if section == "muscle" else 6
        self.progress.setRange(0, self._n_steps)
        self.progress.setValue(0)
        cancel = self._cancel
        emit = self.progressed.emit

        def step(msg: str) -> None:
            if cancel.is_set():
                raise AnalysisCancelled
            emit(msg)

        def work() -> Results:
            return analyze(stack, cfg, roi_mask=roi, progress=step)

        key = self.source_combo.currentData()
        image = Path(path).name if path else str(key)
        first = (self.sources().get(key) or [None])[0]
        if first is not None and first.metadata.get("spinalquant", {}).get("image"):
            image = first.metadata["spinalquant"]["image"]  # a scene: named as a batch run names it
        # errors are shown by _on_worker_error; without _ignore_errors superqt re-raises
        # them in the GUI thread as well (a traceback, or an abort outside napari's app)
        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda res: self._on_analysed(res, image, cfg, path, key))
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        self.analyse_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"analysing {image} ({section}) …")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running analysis at its next step."""
        self._cancel.set()
        self.status.setText("cancelling …")

    def _on_progress(self, msg: str) -> None:
        self.progress.setValue(min(self.progress.value() + 1, self._n_steps))
        self.status.setText(f"{msg} …")

    def _on_worker_error(self, exc: BaseException) -> None:
        if isinstance(exc, AnalysisCancelled):
            self.status.setText("analysis cancelled")
        else:
            self._error(exc)

    def _on_worker_finished(self) -> None:
        self.analyse_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self._worker = None

    def _on_analysed(self, res: Results, image: str, cfg: Config, path: str | None,
                     key: str) -> None:
        self.progress.setValue(self._n_steps)
        self.open_results(res, image=image, config=cfg, source=path or key, out_dir=None)
        self.status.setText(f"{image}: analysed ({res.section})")

    # -------------------------------------------------------------- results
    def open_results(self, res: Results, *, image: str, config: Config, source: str | None,
                     out_dir: str | None) -> ReviewSession:
        """Show an image's results as layers and start reviewing them."""
        old = self.sessions.pop(image, None)
        if old is not None:
            for lyr in old.layers.values():
                if lyr in self.viewer.layers:
                    self.viewer.layers.remove(lyr)
        session = ReviewSession(image, res, res, config, out_dir=out_dir, source=source)
        self.sessions[image] = session
        self._active = image
        for data, kwargs, kind in result_layers(res, image=image, out_dir=out_dir, source=source):
            lyr = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            self._adopt(lyr, session)
        self._show_summary(session)
        self.out_label.setText(f"results folder: {out_dir or '(not saved yet)'}")
        return session

    def _adopt(self, layer: Any, session: ReviewSession | None = None) -> None:
        """Hook a result layer (from the widget or the reader) into review."""
        meta = layer.metadata.get("spinalquant", {})
        kind, image = meta.get("kind"), meta.get("image")
        if not kind or not image or kind == "roi":
            return
        if session is None:
            session = self.sessions.get(image)
            if session is None:
                out = meta.get("out_dir")
                if not out:
                    return
                from ..review import load_image_results, results_config

                try:
                    res = load_image_results(out, image)
                except Exception:
                    return
                session = ReviewSession(image, res, res, results_config(out), out_dir=out,
                                        source=meta.get("source"))
                self.sessions[image] = session
                self._active = image
                self._show_summary(session)
        session.layers[kind] = layer
        if session.image == self._active:
            self.flip_btn.setEnabled("gfp_cells" in session.layers)
        if kind == "puncta":
            session.points0 = np.array(layer.data, copy=True)
            return
        if self._on_click not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(self._on_click)
            layer.contour = 2  # outlines keep the image visible; napari's tools still edit
        layer.events.selected_label.connect(lambda e, lyr=layer: self._show_object(lyr))

    def _session_for(self, layer: Any = None) -> ReviewSession:
        layer = layer or self.viewer.layers.selection.active
        image = None
        if layer is not None:
            image = layer.metadata.get("spinalquant", {}).get("image")
        image = image if image in self.sessions else self._active
        if image is None or image not in self.sessions:
            raise ValueError("no results to review: analyse an image or open a results folder")
        return self.sessions[image]

    def _on_active_layer(self, event: Any = None) -> None:
        layer = self.viewer.layers.selection.active
        image = layer.metadata.get("spinalquant", {}).get("image") if layer is not None else None
        if image in self.sessions and (image != self._active
                                       or self.summary_table.rowCount() == 0):
            self._active = image
            self._show_summary(self.sessions[image])

    def _on_click(self, layer: Any, event: Any) -> None:
        if layer.mode != "pan_zoom" or event.type != "mouse_press":
            return
        value = layer.get_value(event.position, view_direction=event.view_direction,
                                dims_displayed=event.dims_displayed, world=True)
        if value is None:
            return
        value = int(value)
        if value > 0:
            layer.selected_label = value
            self._show_object(layer)

    def select_object(self, layer: Any, label: int) -> None:
        """Select an object of a result layer and show its measurements."""
        layer.selected_label = int(label)
        self._show_object(layer)

    def _show_object(self, layer: Any) -> None:
        meta = layer.metadata.get("spinalquant", {})
        kind, image = meta.get("kind"), meta.get("image")
        session = self.sessions.get(image)
        if session is None:
            return
        label = int(layer.selected_label)
        table = session.current.tables.get(kind)
        row = None if table is None else table[table["label"] == label]
        if row is None or row.empty:
            self.selected_label.setText(
                f"{kind} {label}: not measured — press Recompute after editing; an object "
                "outside the ROI or below the minimum size is not counted")
            self._fill(self.object_table, [])
            return
        rec = row.iloc[0].to_dict()
        extra = " (GFAP call set by hand)" if kind == "gfp_cells" and label in session.overrides else ""
        self.selected_label.setText(f"{kind} {label} in {image}{extra}")
        self._fill(self.object_table, list(rec.items()))

    def _show_summary(self, session: ReviewSession) -> None:
        rows = [(k, v) for k, v in session.current.summary.items() if v is not None]
        self._fill(self.summary_table, [("image", session.image), ("section", session.current.section),
                                        *rows])
        # the review controls follow the image shown
        self.flip_btn.setEnabled("gfp_cells" in session.layers)
        self.out_label.setText(f"results folder: {session.out_dir or '(not saved yet)'}")

    # --------------------------------------------------------------- review
    def flip_gfap(self, label: int | None = None) -> None:
        """Toggle the GFAP call of the selected (or given) GFP+ cell and recompute."""
        from ..review import flip_gfap

        try:
            session = self._session_for()
            layer = session.layers.get("gfp_cells")
            if layer is None:
                raise ValueError("this image has no GFP+ cells")
            label = int(layer.selected_label if label is None else label)
            session.overrides = flip_gfap(session.current.tables["gfp_cells"], label,
                                          session.overrides)
        except Exception as exc:
            self._error(exc)
            return
        self.recompute(session.image)
        layer.selected_label = label
        self._show_object(layer)

    def recompute(self, image: str | None = None) -> Results | None:
        """Re-measure the image from its edited label layers."""
        from ..review import recompute

        try:
            session = self.sessions[image] if image else self._session_for()
            px = float(session.baseline.pixel_size_um)
            labels = {k: np.asarray(lyr.data) for k, lyr in session.layers.items() if k != "puncta"}
            puncta = None
            pts = session.layers.get("puncta")
            if pts is not None and not (session.points0 is not None
                                        and np.array_equal(pts.data, session.points0)):
                puncta = puncta_table(pts.data, pts.features, pixel_size_um=px)
            new = recompute(session.baseline, labels, puncta=puncta,
                            gfap_overrides=session.overrides, config=session.config)
        except Exception as exc:
            self._error(exc)
            return None
        session.current = new
        for kind, lyr in session.layers.items():
            if kind == "puncta":
                lyr.features = new.tables["puncta"].reset_index(drop=True)
                continue
            if kind in new.labels and not np.array_equal(new.labels[kind], lyr.data):
                lyr.data = new.labels[kind]
            lyr.features = features_table(new.tables.get(kind))
            if kind == "gfp_cells":
                lyr.colormap = gfap_colormap(new.tables.get(kind))
        self._show_summary(session)
        n = len(new.provenance.get("edits", []))
        self.status.setText(f"{session.image}: recomputed ({n} edit(s) since the last save)")
        return new

    def save(self, out_dir: str | None = None) -> pd.DataFrame | None:
        """Recompute, then write the image's rows into its results folder."""
        from ..review import save_review

        try:
            session = self._session_for()
        except Exception as exc:
            self._error(exc)
            return None
        out = out_dir or session.out_dir
        if not out:
            out = QFileDialog.getExistingDirectory(self, "Results folder to save into")
            if not out:
                return None
        new = self.recompute(session.image)
        if new is None:
            return None
        try:
            source = session.source if session.source and Path(session.source).is_file() else None
            summary = save_review(out, session.image, new, config=session.config,
                                  source_path=source)
        except Exception as exc:
            self._error(exc)
            return None
        report_note = ""
        if not new.planes and (Path(out) / "qc").is_dir():
            # reviewed from a results folder: the image itself is not loaded
            report_note = " (QC overlay not redrawn: the image is not open)"
        if (Path(out) / "report.html").is_file():  # keep the folder's report in step
            try:
                from ..report import write_report

                write_report(out)
                report_note += " (report.html updated)"
            except Exception as exc:  # the tables are saved; say what is stale
                report_note += f" (report.html NOT updated: {exc})"
        session.baseline = new
        session.overrides = {}
        session.out_dir = str(out)
        pts = session.layers.get("puncta")
        if pts is not None:
            session.points0 = np.array(pts.data, copy=True)
        for lyr in session.layers.values():
            lyr.metadata.setdefault("spinalquant", {})["out_dir"] = str(out)
        self.out_label.setText(f"results folder: {out}")
        self.status.setText(f"{session.image}: saved (reviewed) into {out}{report_note}")
        return summary

    # ---------------------------------------------------------------- misc
    def _error(self, exc: BaseException) -> None:
        if isinstance(exc, KeyError) and exc.args:  # str(KeyError) adds quotes
            msg = str(exc.args[0])
        else:
            msg = str(exc) or type(exc).__name__
        self.status.setText(f"error: {msg}")
        try:
            from napari.utils.notifications import show_error

            show_error(msg)
        except Exception:
            pass

