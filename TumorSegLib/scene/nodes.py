"""Volume and transform nodes ↔ :class:`~TumorSegLib.volume.Volume` and SimpleITK transforms.

Imports ``slicer`` lazily so the rest of the library never needs it. Runs in Slicer and, for tests,
on a scene from the ``slicer-core`` wheel (Slicer's own MRML classes). Slicer works in RAS;
:class:`~TumorSegLib.volume.Volume` is LPS: the conversion flips x and y.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..sequences import guess_sequence
from ..volume import Volume

__all__ = ["ROLE_ATTRIBUTE", "volume_from_node", "add_volume_node", "update_volume_node", "add_uncertainty_node",
           "ijk_to_ras", "transform_node_from_sitk", "sitk_from_transform_node", "assign_volume_nodes"]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
ROLE_ATTRIBUTE = "TumorSeg.Role"  # on TumorSeg's own output nodes: "uncertainty", "results", "timeline"


def _slicer():
    import slicer

    return slicer


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def volume_from_node(node, world: bool = True) -> Volume:
    """The voxels and LPS geometry of a scalar volume node, parent linear transforms applied.

    Args:
        node: a scalar volume node.
        world: apply the node's parent transforms (where it shows); ``False`` gives its own (native) grid,
            e.g. for a follow-up visit shown aligned on the baseline.

    Raises:
        ValueError: if the node has no image data or sits under a non-linear transform.
    """
    slicer = _slicer()
    if node is None or node.GetImageData() is None:
        raise ValueError(f"volume '{node.GetName() if node else None}' holds no image data")
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = _matrix_to_numpy(ijk_to_ras)
    transform_node = node.GetParentTransformNode() if world else None
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise ValueError(f"volume '{node.GetName()}' is under a non-linear transform: harden it first "
                             "(Data module, right-click → Harden transform)")
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        matrix = _matrix_to_numpy(to_world) @ matrix
    lps = _LPS_RAS @ matrix
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    array = slicer.util.arrayFromVolume(node)  # [k, j, i]
    return Volume(np.ascontiguousarray(array.transpose(2, 1, 0)), tuple(spacing), tuple(lps[:3, 3]),
                  lps[:3, :3] / spacing)


def ijk_to_ras(volume: Volume):
    return _numpy_to_matrix(_LPS_RAS @ volume.affine)


def update_volume_node(node, volume: Volume) -> None:
    """Put a 3D volume's voxels and geometry into an existing volume node."""
    slicer = _slicer()
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    node.SetIJKToRASMatrix(ijk_to_ras(volume))


def add_volume_node(scene, volume: Volume, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node (unique name derived from ``name``) holding ``volume``, with display nodes."""
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    update_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def add_uncertainty_node(scene, uncertainty: Volume, name: str):
    """A scalar volume (0–1) with a perceptual colour map, windowed to the full 0–1 range."""
    node = add_volume_node(scene, uncertainty.with_array(uncertainty.array.astype(np.float32)), name)
    display = node.GetDisplayNode()
    for color_id in ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeInferno",
                     "vtkMRMLColorTableNodeIron"):
        if scene.GetNodeByID(color_id):
            display.SetAndObserveColorNodeID(color_id)
            break
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    node.SetAttribute(ROLE_ATTRIBUTE, "uncertainty")
    return node


def transform_node_from_sitk(scene, transform, name: str):
    """A linear transform node that shows a moving image aligned on the fixed one.

    ``transform`` maps fixed points to moving points (LPS, as registration returns); Slicer's
    transform-to-parent of the moving node is its inverse, in RAS.
    """
    probes = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], float)
    mapped = np.array([transform.TransformPoint([float(c) for c in p]) for p in probes])
    fixed_to_moving = np.eye(4)
    fixed_to_moving[:3, :3] = (mapped[1:] - mapped[0]).T / 100.0
    fixed_to_moving[:3, 3] = mapped[0]
    ras = _LPS_RAS @ np.linalg.inv(fixed_to_moving) @ _LPS_RAS
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", scene.GenerateUniqueName(name))
    node.SetMatrixTransformToParent(_numpy_to_matrix(ras))
    return node


def sitk_from_transform_node(node):
    """The inverse of :func:`transform_node_from_sitk`: a SimpleITK affine transform mapping fixed (parent)
    points to moving points, in LPS, from the node's own transform-to-parent."""
    import SimpleITK as sitk
    import vtk

    to_parent = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(to_parent)
    fixed_to_moving = np.linalg.inv(_LPS_RAS @ _matrix_to_numpy(to_parent) @ _LPS_RAS)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in fixed_to_moving[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in fixed_to_moving[:3, 3]])
    return transform


def assign_volume_nodes(scene, series_description: Callable[[object], str | None] | None = None,
                        nodes: list | None = None) -> dict[str, object]:
    """Guess which scalar volume node is which sequence from node names and DICOM series descriptions.

    Label maps and TumorSeg's own outputs are skipped; each node is used at most once, the first
    match in scene order (or in ``nodes``, when only those are candidates) wins. ``series_description(node)``
    may return the DICOM (0008,103E) text.
    """
    assigned: dict[str, object] = {}
    candidates = nodes if nodes is not None else [scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
                                                  for index in range(scene.GetNumberOfNodesByClass(
                                                      "vtkMRMLScalarVolumeNode"))]
    for node in candidates:
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute(ROLE_ATTRIBUTE):
            continue
        texts = [series_description(node) if series_description else None, node.GetName()]
        for text in filter(None, texts):
            key = guess_sequence(text)
            if key:
                if key not in assigned:
                    assigned[key] = node
                break
    return assigned
