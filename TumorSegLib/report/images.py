"""Key images of a result: axial, coronal and sagittal slices through the tumour with the contours of each
label, and the same slices with the voxel uncertainty over them (PNG, for the report)."""

from __future__ import annotations

import io

import numpy as np

from ..geometry import reorient
from ..labels import LABELS
from ..volume import Volume

__all__ = ["tumour_slices", "key_images_png"]


def tumour_slices(labels: Volume) -> tuple[int, int, int]:
    """(sagittal i, coronal j, axial k) on an LPS-oriented grid: the axial slice with the most tumour, and the
    coronal and sagittal slices through the tumour's centre (the grid's centre when there is no tumour)."""
    tumour = labels.array > 0
    if not tumour.any():
        return tuple(int(n // 2) for n in labels.shape)  # type: ignore[return-value]
    axial = int(np.argmax(tumour.sum(axis=(0, 1))))
    centre = np.argwhere(tumour).mean(axis=0).round().astype(int)
    return int(centre[0]), int(centre[1]), axial


def _window(image: np.ndarray) -> tuple[float, float]:
    inside = image[image > np.percentile(image, 5)] if image.any() else image.ravel()
    if inside.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(inside, (0.5, 99.5))
    return float(low), float(high if high > low else low + 1)


def key_images_png(image: Volume, labels: Volume, uncertainty: Volume | None = None, title: str = "",
                   dpi: int = 130) -> bytes:
    """A PNG: the three slices with contours (top row) and, when given, with the uncertainty (bottom row).

    ``image``, ``labels`` and ``uncertainty`` share one grid (the reference sequence's). Shown in radiological
    convention: patient's right on the image's left, anterior up on axial slices.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    image, labels = reorient(image, "LPS"), reorient(labels, "LPS")
    doubt = reorient(uncertainty, "LPS") if uncertainty is not None else None
    i, j, k = tumour_slices(labels)
    sx, sy, sz = labels.spacing
    cuts = [("Axial", np.s_[:, :, k], sy / sx, "upper"), ("Coronal", np.s_[:, j, :], sz / sx, "lower"),
            ("Sagittal", np.s_[i, :, :], sz / sy, "lower")]
    rows = 2 if doubt is not None else 1
    figure, axes = plt.subplots(rows, 3, figsize=(10, 3.6 * rows + 0.5), squeeze=False)
    low, high = _window(image.array)
    for column, (name, cut, aspect, origin) in enumerate(cuts):
        plane = image.array[cut].T
        for row in range(rows):
            axis = axes[row][column]
            axis.imshow(plane, cmap="gray", vmin=low, vmax=high, aspect=aspect, origin=origin, interpolation="nearest")
            axis.set_axis_off()
            if name != "Sagittal":  # radiological convention: the patient's right on the image's left
                axis.text(0.02, 0.5, "R", transform=axis.transAxes, color="white", fontsize=9, va="center")
        top = axes[0][column]
        for info in LABELS:
            mask = (labels.array[cut] == info.label).T
            if mask.any():
                top.contour(mask, levels=[0.5], colors=[info.color], linewidths=1.0, origin=origin)
        top.set_title(f"{name}", fontsize=10)
        if doubt is not None:
            overlay = np.ma.masked_less(doubt.array[cut].T, 0.05)
            shown = axes[1][column].imshow(overlay, cmap="magma", vmin=0, vmax=1, alpha=0.8, aspect=aspect,
                                           origin=origin, interpolation="nearest")
            axes[1][column].set_title(f"{name}: uncertainty", fontsize=10)
    handles = [Line2D([], [], color=info.color, lw=2, label=info.name) for info in LABELS]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if doubt is not None:
        bar = figure.colorbar(shown, ax=[axes[1][c] for c in range(3)], fraction=0.025, pad=0.01)
        bar.set_label("uncertainty (0 sure, 1 unsure)", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
