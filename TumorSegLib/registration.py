"""Rigid (and affine) registration of one MRI volume onto another, with SimpleITK.

Used twice in TumorSeg: to align each follow-up visit to the baseline visit (same sequence, different
day), and to co-register the sequences of one visit (T2, FLAIR, T1 onto T1c). Both are served by one
multi-modal set-up: Mattes mutual information, a multi-resolution pyramid, and a start from a centred
transform (image centres or centres of mass).

Convention (ITK's): the returned transform maps physical points (LPS, mm) of the *fixed* image to
physical points of the *moving* image, which is what resampling the moving image onto the fixed grid
needs. :func:`resample_moving` does that resampling.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .geometry import reference_image, resample_to_grid, resample_to_spacing
from .options import TransformKind, choices
from .volume import Volume

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "RegistrationResult",
    "TransformError",
    "register",
    "resample_moving",
    "transform_error",
    "rotation_angle_deg",
    "repeatable_itk",
    "points_of",
]

Initialization = Literal["moments", "geometry", "none"]
_ONE_THREAD = threading.RLock()


@contextlib.contextmanager
def repeatable_itk() -> Iterator[None]:
    """Run ITK on one thread inside the block, so a mutual-information registration gives the same transform on
    every run and machine. With several threads ITK's Mattes metric adds the threads' partial sums in the order
    they finish, and the optimiser amplifies the last-digit differences: the atlas brain mask of one head
    varied between Dice 0.83 and 0.88 from run to run on 2 cores. One thread costs little here (brain
    extraction 2.4 s per head in ``preprocessing_benchmark.py``). ITK reads the thread count from a
    process-wide default, hence the lock."""
    import SimpleITK as sitk

    with _ONE_THREAD:
        before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            yield
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


@dataclass(frozen=True)
class RegistrationResult:
    """What :func:`register` found.

    Attributes:
        transform: maps fixed-image physical points (mm, LPS) to moving-image physical points.
        metric_value: final Mattes mutual information (negative; lower is a better match).
        iterations: optimiser iterations summed over all resolution levels (and both stages for affine).
        stop_condition: the optimiser's reason for stopping at the last level.
    """

    transform: "sitk.Transform"
    metric_value: float
    iterations: int
    stop_condition: str

    def resample(self, moving: Volume, reference: Volume, order: int = 1, default: float = 0.0) -> Volume:
        """``moving`` on ``reference``'s grid through :attr:`transform` (see :func:`resample_moving`)."""
        return resample_moving(moving, reference, self.transform, order, default)


@dataclass(frozen=True)
class TransformError:
    """Disagreement between two transforms.

    Attributes:
        max_displacement_mm: largest distance between where the two transforms send the same point.
        mean_displacement_mm: mean of that distance over the points.
        rotation_deg: angle of the rotation that takes one transform's rotation to the other's.
    """

    max_displacement_mm: float
    mean_displacement_mm: float
    rotation_deg: float


def _as_float_image(volume: Volume, name: str) -> "sitk.Image":
    import SimpleITK as sitk

    if volume.array.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume, got shape {volume.array.shape}; register one sequence at a time")
    if not np.isfinite(volume.array).all():
        raise ValueError(f"{name} contains NaN or infinite values; fix the image before registering it")
    if float(volume.array.max()) == float(volume.array.min()):
        raise ValueError(f"{name} is constant: there is nothing to register")
    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)


def _as_mask_image(mask: Volume, name: str) -> "sitk.Image":
    import SimpleITK as sitk

    if not np.any(mask.array):
        raise ValueError(f"{name} is empty; give a mask with the voxels the metric should use, or no mask")
    return sitk.Cast(mask.with_array((mask.array > 0.5).astype(np.uint8)).to_sitk(), sitk.sitkUInt8)


def _initial_transform(fixed: "sitk.Image", moving: "sitk.Image", initialization: Initialization) -> "sitk.Transform":
    import SimpleITK as sitk

    if initialization == "none":
        # Rotation about the fixed image's centre keeps rotation and translation well separated.
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in fixed.GetSize()])
        transform = sitk.Euler3DTransform()
        transform.SetCenter(centre)
        return transform
    mode = {"moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
            "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY}.get(initialization)
    if mode is None:
        raise ValueError(f"initialization must be 'moments', 'geometry' or 'none', got {initialization!r}")
    return sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)


def _run_stage(fixed: "sitk.Image", moving: "sitk.Image", initial: "sitk.Transform",
               fixed_mask: "sitk.Image | None", moving_mask: "sitk.Image | None", shrink_factors: Sequence[int],
               smoothing_sigmas_mm: Sequence[float], histogram_bins: int, samples_per_level: int,
               max_iterations: int, learning_rate: float, min_step: float, seed: int) -> tuple["sitk.Transform", float, int, str]:
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(1)  # with repeatable_itk below: the same transform on every run and machine
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=histogram_bins)
    # Random sampling with a fixed seed: fast, and repeatable on one thread. About the same number of
    # samples at every level, so the fine levels cost no more per iteration than the coarse ones.
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = float(np.prod(fixed.GetSize()))
    if fixed_mask is not None:  # samples outside the mask are dropped: draw more to keep the count
        statistics = sitk.StatisticsImageFilter()
        statistics.Execute(fixed_mask)
        voxels = max(1.0, statistics.GetSum() * voxels / float(np.prod(fixed_mask.GetSize())))
    percentages = [min(1.0, samples_per_level * s**3 / voxels) for s in shrink_factors]
    method.SetMetricSamplingPercentagePerLevel(percentages, seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    method.SetInterpolator(sitk.sitkLinear)
    # A slow step decay (0.9 per direction change) keeps the optimiser from stalling on the small noisy
    # steps of a sampled metric before it has turned the image fully into place.
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=min_step,
                                                    numberOfIterations=max_iterations,
                                                    relaxationFactor=0.9, gradientMagnitudeTolerance=1e-8)
    # Scales from physical shift: one unit of every parameter moves points by about the same distance (mm),
    # so rotations (radians) and translations (mm) are balanced without hand tuning.
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_sigmas_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    iterations = [0]
    method.AddCommand(sitk.sitkIterationEvent, lambda: iterations.__setitem__(0, iterations[0] + 1))
    with repeatable_itk():
        transform = method.Execute(fixed, moving)
    if isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
        transform = transform.GetNthTransform(0)
    return transform, float(method.GetMetricValue()), iterations[0], method.GetOptimizerStopConditionDescription()


def register(fixed: Volume, moving: Volume, *, kind: TransformKind | str = TransformKind.RIGID,
             fixed_mask: Volume | None = None, moving_mask: Volume | None = None, initialization: Initialization = "moments",
             shrink_factors: Sequence[int] = (4, 2, 1), smoothing_sigmas_mm: Sequence[float] = (2.0, 1.0, 0.0),
             histogram_bins: int = 50, samples_per_level: int = 20000, max_iterations: int = 200,
             learning_rate: float = 1.0, min_step: float = 0.001, working_spacing_mm: float | None = None,
             seed: int = 20260) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` by maximising Mattes mutual information.

    Mutual information makes this work across sequences (T2 or FLAIR onto T1c) as well as between visits.
    ``kind='affine'`` first solves the rigid problem, then refines a 12-parameter affine from it.

    Args:
        fixed: reference volume, shape (I, J, K), any spacing and direction; moving: its own grid.
        kind: ``'rigid'`` (6 parameters: rotation about a centre + translation) or ``'affine'``.
        fixed_mask, moving_mask: optional masks (any grid covering their image): only their non-zero voxels
            feed the metric, e.g. the brain.
        initialization: ``'moments'`` (centres of mass; good for skull-stripped brains), ``'geometry'`` (image
            centres) or ``'none'`` (identity).
        shrink_factors: down-sampling per pyramid level, coarsest first.
        smoothing_sigmas_mm: Gaussian smoothing per level in mm (same length as ``shrink_factors``).
        histogram_bins: bins of the joint histogram.
        samples_per_level: voxels sampled at random for the metric at each level (all of them if fewer).
        max_iterations: optimiser iterations per level.
        learning_rate: initial step length of the gradient descent (about mm of point motion).
        min_step: the step length (about mm) at which a level has converged.
        working_spacing_mm: resample both images (and masks) to this isotropic spacing first, e.g. 2.0 for
            whole-head MRI: several times faster, and the result is a physical transform all the same.
        seed: seed of the random sampling.

    Returns:
        The transform (fixed → moving physical points), final metric value and iteration count.
    Raises:
        ValueError: for 4D, constant or non-finite input, an empty mask, or inconsistent settings.
    """
    if kind not in choices(TransformKind):
        raise ValueError(f"kind must be one of {', '.join(choices(TransformKind))}, got {kind!r}")
    if len(shrink_factors) != len(smoothing_sigmas_mm) or not shrink_factors:
        raise ValueError(f"give one smoothing sigma per shrink factor (got {list(shrink_factors)} and "
                         f"{list(smoothing_sigmas_mm)})")
    if samples_per_level < 1000:
        raise ValueError(f"samples_per_level must be at least 1000 for a stable mutual information, "
                         f"got {samples_per_level}")
    if working_spacing_mm is not None:
        fixed, moving, fixed_mask, moving_mask = _at_spacing(working_spacing_mm, fixed, moving, fixed_mask,
                                                             moving_mask)
    fixed_image = _as_float_image(fixed, "the fixed image")
    moving_image = _as_float_image(moving, "the moving image")
    fixed_mask_image = _as_mask_image(fixed_mask, "the fixed mask") if fixed_mask is not None else None
    moving_mask_image = _as_mask_image(moving_mask, "the moving mask") if moving_mask is not None else None
    settings = dict(fixed_mask=fixed_mask_image, moving_mask=moving_mask_image, shrink_factors=shrink_factors,
                    smoothing_sigmas_mm=smoothing_sigmas_mm, histogram_bins=histogram_bins,
                    samples_per_level=samples_per_level, max_iterations=max_iterations,
                    learning_rate=learning_rate, min_step=min_step, seed=seed)

    initial = _initial_transform(fixed_image, moving_image, initialization)
    transform, metric, iterations, stop = _run_stage(fixed_image, moving_image, initial, **settings)
    if kind == TransformKind.AFFINE:  # refine the rigid solution
        transform, metric, more, stop = _run_stage(fixed_image, moving_image, _affine_from(transform), **settings)
        iterations += more
    return RegistrationResult(transform, metric, iterations, stop)


def _affine_from(rigid_transform: sitk.Transform) -> sitk.Transform:
    """A 12-parameter affine transform starting where a rigid one is."""
    import SimpleITK as sitk

    rigid = sitk.Euler3DTransform(rigid_transform)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


def _at_spacing(spacing_mm: float, fixed: Volume, moving: Volume, fixed_mask: Volume | None,
                moving_mask: Volume | None) -> tuple[Volume, Volume, Volume | None, Volume | None]:
    """Images (and masks, onto their image's new grid) resampled to an isotropic working spacing."""
    spacing = (float(spacing_mm),) * 3
    fixed, moving = resample_to_spacing(fixed, spacing, order=1), resample_to_spacing(moving, spacing, order=1)

    def mask_on(mask: Volume | None, image: Volume) -> Volume | None:
        return None if mask is None else resample_to_grid(mask.with_array((mask.array > 0).astype(np.float32)), image,
                                                          order=1)

    return fixed, moving, mask_on(fixed_mask, fixed), mask_on(moving_mask, moving)


def resample_moving(moving: Volume, reference: Volume, transform: "sitk.Transform", order: int = 1,
                    default: float = 0.0) -> Volume:
    """Resample ``moving`` onto ``reference``'s grid through ``transform`` (reference point → moving point).

    Args:
        moving: 3D volume on its own grid.
        reference: the grid (shape, spacing, origin, direction) of the result; its values are not used.
        transform: maps reference physical points to moving physical points (as :func:`register` returns).
        order: 0 nearest neighbour (label maps keep their codes and dtype), 1 linear (images, float32).
        default: value where the transformed point falls outside ``moving``.

    Returns:
        A volume with ``reference``'s geometry, shape (I, J, K) of ``reference``.
    """
    import SimpleITK as sitk

    if order not in (0, 1):
        raise ValueError(f"order must be 0 (labels) or 1 (images), got {order}")
    grid = reference_image(reference)
    interpolator = sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear
    image = moving.to_sitk() if order == 0 else sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    resampled = sitk.Resample(image, grid, transform, interpolator, float(default), image.GetPixelID())
    out = Volume.from_sitk(resampled)
    if order == 0 and moving.array.dtype == bool:
        out = out.with_array(out.array.astype(bool))
    return out


def points_of(volume: Volume, mask: np.ndarray | None = None, max_points: int = 20000) -> np.ndarray:
    """Physical positions (mm, LPS) to compare transforms on: mask voxels, or the 8 corners of the grid.

    Args:
        volume: gives the geometry.
        mask: boolean array of ``volume``'s shape; ``None`` uses the corners of the volume's box, which
            bound the displacement difference of two affine maps over the whole box (it is affine too, so
            its largest norm is at a vertex).
        max_points: mask voxels are subsampled evenly down to about this many.

    Returns:
        Array of shape (N, 3).
    """
    if mask is None:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in volume.shape], indexing="ij")).reshape(3, -1).T
        index = corners.astype(float)
    else:
        if mask.shape != volume.shape:
            raise ValueError(f"mask shape {mask.shape} does not fit the volume {volume.shape}")
        index = np.argwhere(mask).astype(float)
        if len(index) == 0:
            raise ValueError("the mask is empty: give a mask with at least one voxel, or none to use the box corners")
        index = index[:: max(1, len(index) // max_points)]
    return (volume.affine @ np.c_[index, np.ones(len(index))].T)[:3].T


def _linear_part(transform: "sitk.Transform", points: np.ndarray) -> np.ndarray:
    """3×3 matrix of the affine map that best fits ``transform`` near ``points`` (exact for affine transforms)."""
    # A least-squares fit on a cube of probes (±50 mm about the points' centre) works for every SimpleITK
    # transform type (Euler, versor, affine, composite) and does not depend on how the points are spread.
    offsets = 50.0 * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    probes = points.mean(0) + offsets
    mapped = np.array([transform.TransformPoint([float(c) for c in p]) for p in probes])
    solution, *_ = np.linalg.lstsq(offsets, mapped - mapped.mean(0), rcond=None)
    return solution.T


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Angle in degrees of the rotation part of a 3×3 matrix (polar decomposition removes scaling/shear)."""
    from scipy.linalg import polar

    rotation, _ = polar(np.asarray(matrix, dtype=float))
    cosine = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


def transform_error(estimated: "sitk.Transform", truth: "sitk.Transform", points_mm: np.ndarray) -> TransformError:
    """How far apart two transforms are: point displacement (mm) and relative rotation (degrees).

    Args:
        estimated: e.g. a registration result's transform.
        truth: the known transform, same direction of mapping.
        points_mm: (N, 3) physical points where displacements are compared; :func:`points_of` gives a mask's
            voxels or a box's corners.

    Returns:
        Largest and mean distance between ``estimated(p)`` and ``truth(p)``, and the angle of
        ``R_estimated · R_truthᵀ``.
    """
    points = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        raise ValueError("give at least one point to compare the transforms on")
    a = np.array([estimated.TransformPoint([float(c) for c in p]) for p in points])
    b = np.array([truth.TransformPoint([float(c) for c in p]) for p in points])
    distance = np.linalg.norm(a - b, axis=1)
    from scipy.linalg import polar

    rotation_estimated, _ = polar(_linear_part(estimated, points))
    rotation_truth, _ = polar(_linear_part(truth, points))
    return TransformError(float(distance.max()), float(distance.mean()),
                          rotation_angle_deg(rotation_estimated @ rotation_truth.T))
