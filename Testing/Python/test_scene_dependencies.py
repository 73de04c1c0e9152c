from TumorSegLib.scene.dependencies import install_plan, missing_requirements, requirements


def test_requirements_are_pinned_and_include_the_inference_stack():
    names = {r.name: r.spec for r in requirements()}
    assert {"torch", "monai", "SimpleITK", "nibabel"} <= set(names)
    assert all(spec.startswith("==") for spec in names.values())


def test_missing_packages_are_found_with_the_given_finder():
    installed = {"numpy", "scipy", "SimpleITK"}
    missing = missing_requirements(find_spec=lambda name: object() if name in installed else None)
    assert {r.name for r in missing} >= {"torch", "monai", "nibabel"}
    assert "numpy" not in {r.name for r in missing}


def test_torch_goes_through_pytorch_utils_when_it_is_there():
    missing = [r for r in requirements() if r.name in ("torch", "monai")]
    plan = install_plan(missing, pytorch_utils_available=True)
    assert plan.torch_with_pytorch_utils.name == "torch" and plan.pip == ("monai==1.6.1",)
    assert "PyTorch Utils" in plan.describe()


def test_torch_goes_through_pip_first_without_pytorch_utils():
    missing = [r for r in requirements() if r.name in ("torch", "monai")]
    plan = install_plan(missing, pytorch_utils_available=False)
    assert plan.torch_with_pytorch_utils is None and plan.pip[0] == "torch==2.13.0"


def test_nothing_missing_means_nothing_to_do():
    plan = install_plan([], pytorch_utils_available=False)
    assert plan.torch_with_pytorch_utils is None and plan.pip == () and plan.describe() == ""
