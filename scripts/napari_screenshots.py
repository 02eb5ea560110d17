"""Screenshots of the napari plugin on the bundled samples, written into docs/.

Run under a display, or Xvfb with Qt's normal xcb platform (the ``offscreen``
platform renders the OpenGL canvas black)::

    xvfb-run -a -s "-screen 0 1600x1100x24" python scripts/napari_screenshots.py

Writes ``docs/napari_cord_review.png`` (whole window: cord sample analysed,
a motor neuron selected, the dock widget with its summary and measurements),
``docs/napari_cord_canvas.png`` (the canvas alone, zoomed on the ventral horn)
and ``docs/napari_muscle.png`` (laminin sample analysed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_images"
DOCS = REPO / "docs"


def _shrink(path: Path) -> None:
    """Store a screenshot as a 256-colour PNG: a third of the size, no visible loss."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                           dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _wait(app, widget, name: str, timeout_s: float = 300.0) -> None:
    t0 = time.monotonic()
    while name not in widget.sessions:
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"analysis of {name} did not finish: {widget.status.text()}")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)


def _settle(app, viewer) -> None:
    """Let Qt paint, and close notification toasts so they do not cover the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(5):
        app.processEvents()


def _layer(viewer, image: str, kind: str):
    return next(lyr for lyr in viewer.layers
                if lyr.metadata.get("spinalquant", {}).get("image") == image
                and lyr.metadata.get("spinalquant", {}).get("kind") == kind)


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from spinalquant.napari._widget import SpinalquantWidget

    DOCS.mkdir(exist_ok=True)
    viewer = napari.Viewer(show=True, title="spinalquant")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1560, 1040)
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    widget = SpinalquantWidget(viewer)
    viewer.window.add_dock_widget(widget, name="spinalquant", area="right")

    # ---- cord sample with its ventral-horn ROI
    name = "cord_L5_02.tif"
    viewer.open(str(SAMPLES / name), plugin="spinalquant")
    widget.analyse()
    _wait(app, widget, name)
    viewer.layers["DAPI"].visible = False
    for lyr in viewer.layers:
        if lyr.metadata.get("spinalquant", {}).get("kind") in ("astrocytes",):
            lyr.visible = False
    mn = _layer(viewer, name, "motor_neurons")
    viewer.layers.selection.active = mn
    if len(mn.features):
        widget.select_object(mn, int(mn.features["label"].iloc[0]))
    viewer.reset_view()
    _settle(app, viewer)
    viewer.window.screenshot(str(DOCS / "napari_cord_review.png"), canvas_only=False)

    # canvas only, zoomed on the first motor neuron
    if len(mn.features):
        row = mn.features.iloc[0]
        viewer.camera.center = (float(row["y_um"]), float(row["x_um"]))
        viewer.camera.zoom = viewer.camera.zoom * 3
    _settle(app, viewer)
    viewer.screenshot(str(DOCS / "napari_cord_canvas.png"), canvas_only=True)

    # ---- muscle sample
    viewer.layers.clear()
    name = "ta_laminin_01.ome.tif"
    viewer.open(str(SAMPLES / name), plugin="spinalquant")
    for _ in range(10):
        app.processEvents()
    widget.analyse()
    _wait(app, widget, name)
    fib = _layer(viewer, name, "fibers")
    viewer.layers.selection.active = fib
    if len(fib.features):
        widget.select_object(fib, int(fib.features["label"].iloc[len(fib.features) // 2]))
    viewer.reset_view()
    _settle(app, viewer)
    viewer.window.screenshot(str(DOCS / "napari_muscle.png"), canvas_only=False)
    viewer.close()
    for p in DOCS.glob("napari_*.png"):
        _shrink(p)
    print("wrote", *(p.name for p in sorted(DOCS.glob("napari_*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
