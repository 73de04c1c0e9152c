"""Diameters of a lesion's cross-section, as calipers measure them, and the axial frame they are taken in."""

from __future__ import annotations

import numpy as np

from ..geometry import reorient
from ..volume import Volume

__all__ = ["SMOOTHING_PIXELS", "axial_frame", "slice_normal", "lps", "slice_diameters"]

# Gaussian σ (in pixels) that smooths the pixel staircase away before outlines are traced.
SMOOTHING_PIXELS = 0.6

Point = tuple[float, float, float]


def slice_normal(direction: np.ndarray) -> np.ndarray:
    normal = np.cross(direction[:, 0], direction[:, 1])
    return normal / np.linalg.norm(normal)


def axial_frame(labels: Volume, max_tilt_deg: float = 1.0) -> Volume:
    """The same label map with index axis k running inferior→superior, so ``array[:, :, k]`` are axial slices.

    Axis-aligned grids in any storage order (e.g. RAS NIfTI, sagittal acquisitions) are only permuted and
    flipped (no interpolation). When the slice plane closest to axial is still tilted from it by more than
    ``max_tilt_deg`` (an oblique acquisition), the map is resampled by nearest neighbour onto an LPS-aligned
    grid covering its non-zero voxels, in-plane spacing the finest in-plane spacing and slice spacing the
    original slice spacing.

    Args:
        labels: integer label map (I, J, K).
        max_tilt_deg: tilt of the slice plane from axial that is measured as is (cos 1° = 0.99985).
    """
    framed = reorient(labels, "LPS")
    tilt = np.degrees(np.arccos(min(1.0, abs(slice_normal(framed.direction)[2]))))
    if tilt <= max_tilt_deg:
        return framed
    import SimpleITK as sitk

    inside = np.argwhere(framed.array != 0)
    if len(inside) == 0:
        return framed
    lo, hi = inside.min(0) - 1, inside.max(0) + 1
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T.astype(float)
    corners_mm = (framed.affine @ np.c_[corners, np.ones(8)].T)[:3].T
    in_plane = min(framed.spacing[0], framed.spacing[1])
    spacing = np.array([in_plane, in_plane, framed.spacing[2]])
    start, stop = corners_mm.min(0), corners_mm.max(0)
    size = [int(np.ceil(extent / step)) + 1 for extent, step in zip(stop - start, spacing)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin(start.tolist())
    resampled = sitk.Resample(framed.to_sitk(), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
                              framed.to_sitk().GetPixelID())
    return Volume.from_sitk(resampled)


def lps(volume: Volume, index) -> Point:
    """LPS position (mm) of a continuous voxel index (i, j, k) of ``volume``."""
    return tuple(float(c) for c in (volume.affine @ [*index, 1.0])[:3])  # type: ignore[return-value]


def _longest_run(inside: np.ndarray) -> tuple[int, int, int]:
    """(row, start, stop) of the longest run of True along axis 1 of a 2D boolean array (stop exclusive)."""
    padded = np.pad(inside.astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1).ravel()
    width = padded.shape[1] - 1
    starts, stops = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
    if len(starts) == 0:
        return 0, 0, 0
    best = int(np.argmax(stops - starts))
    row = int(starts[best] // width)
    return row, int(starts[best] - row * width), int(stops[best] - row * width)


def _outline(field: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Sub-pixel points where ``field`` crosses ``level`` between 4-neighbouring pixels: (N, 2) (i, j) indices."""
    points = []
    for axis in (0, 1):
        here = np.moveaxis(field, axis, 0)
        a, b = here[:-1], here[1:]
        crossing = (a >= level) != (b >= level)
        index = np.argwhere(crossing).astype(float)
        index[:, 0] += (a[crossing] - level) / (a[crossing] - b[crossing])  # linear interpolation along the edge
        points.append(index if axis == 0 else index[:, ::-1])
    return np.vstack(points)


def slice_diameters(section: np.ndarray, step_i_mm: np.ndarray, step_j_mm: np.ndarray,
                    smoothing: float = SMOOTHING_PIXELS) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Longest diameter and longest perpendicular diameter of one 2D cross-section.

    The pixelated section is smoothed with a Gaussian (σ = ``smoothing`` × the coarser pixel size) and its
    outline taken at the 0.5 level with sub-pixel interpolation: that removes the staircase of the pixels,
    so an ellipse's diameters come out unbiased and within one pixel. Sections too thin to survive the
    smoothing are measured on their pixel edges instead.

    Args:
        section: boolean array (I, J), the filled cross-section.
        step_i_mm: 3-vector (mm) from a pixel to its neighbour along i (direction column × spacing).
        step_j_mm: same along j.
        smoothing: σ of the smoothing in units of the coarser pixel size (0 measures on pixel edges).

    Returns:
        (longest mm, perpendicular mm, longest end points, perpendicular end points); end points are (2, 2)
        arrays of continuous (i, j) pixel indices.
    """
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    section = np.asarray(section, dtype=bool)
    if not section.any():
        raise ValueError("the cross-section is empty: nothing to measure")
    # Orthonormal in-plane basis: 2D coordinates (mm) = plane @ (i, j).
    e1 = step_i_mm / np.linalg.norm(step_i_mm)
    e2 = step_j_mm - (step_j_mm @ e1) * e1
    e2 /= np.linalg.norm(e2)
    plane = np.array([[step_i_mm @ e1, step_j_mm @ e1], [step_i_mm @ e2, step_j_mm @ e2]])
    to_index = np.linalg.inv(plane)
    pixel_i, pixel_j = float(np.linalg.norm(step_i_mm)), float(np.linalg.norm(step_j_mm))

    pad = 4
    binary = np.pad(section, pad).astype(float)
    sigma_mm = smoothing * max(pixel_i, pixel_j)
    field = ndimage.gaussian_filter(binary, (sigma_mm / pixel_i, sigma_mm / pixel_j)) if smoothing > 0 else binary
    outline = _outline(field)
    if len(outline) < 3:  # too thin for the smoothing: measure on the pixel edges
        field = binary
        outline = _outline(field)
    points = outline @ plane.T  # mm, relative to the padded array's pixel (0, 0)
    candidates = points
    if len(points) > 3:
        try:
            candidates = points[ConvexHull(points).vertices]
        except QhullError:  # all points on a line
            candidates = points
    lengths = np.linalg.norm(candidates[:, None, :] - candidates[None, :, :], axis=2)
    a, b = np.unravel_index(np.argmax(lengths), lengths.shape)
    longest = float(lengths[a, b])
    longest_ends = np.array([candidates[a], candidates[b]]) @ to_index.T - pad

    u = (candidates[b] - candidates[a]) / longest if longest > 0 else np.array([1.0, 0.0])
    perpendicular, ends_mm = _perpendicular(field, points, u, to_index, min(pixel_i, pixel_j) / 20)
    return longest, perpendicular, longest_ends, ends_mm @ to_index.T - pad


def _perpendicular(field: np.ndarray, points: np.ndarray, u: np.ndarray, to_index: np.ndarray, step: float
                   ) -> tuple[float, np.ndarray]:
    """Longest chord at a right angle to direction ``u`` inside the outline (``field`` ≥ 0.5): its length (mm)
    and end points (mm). Lines across the whole lesion are sampled every ``step`` mm."""
    from scipy import ndimage

    v = np.array([-u[1], u[0]])
    offsets = np.arange((points @ u).min(), (points @ u).max(), 5 * step)
    along = np.arange((points @ v).min() - 2 * step, (points @ v).max() + 2 * step, step)
    samples = offsets[:, None, None] * u + along[None, :, None] * v  # (lines, samples, 2) in mm
    index = samples @ to_index.T
    inside = ndimage.map_coordinates(field, [index[..., 0], index[..., 1]], order=1, cval=0.0) >= 0.5
    row, start, stop = _longest_run(inside)
    ends_mm = np.array([offsets[row] * u + (along[start] - step / 2) * v,
                        offsets[row] * u + (along[max(stop - 1, start)] + step / 2) * v])
    return float((stop - start) * step), ends_mm
