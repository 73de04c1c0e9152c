"""One option contract: the command line, the module's argv and its parameter node all come from options.py."""

import argparse

import pytest

from TumorSegLib.cli import build_parser
from TumorSegLib.labels import LabelConvention
from TumorSegLib.options import (
    ClinicalOptions,
    Device,
    Mode,
    SegmentOptions,
    TransformKind,
    UncertaintyMap,
    UncertaintyOptions,
    add_arguments,
    choices,
)


def parse_segment(argv):
    return build_parser().parse_args(["segment", "--flair", "f.nii.gz", "-o", "out.nii.gz", *argv])


def test_defaults_give_an_empty_argv_and_parse_back_to_the_defaults():
    assert SegmentOptions().to_argv() == []
    assert SegmentOptions.from_args(parse_segment([])) == SegmentOptions()


def test_every_option_survives_the_trip_through_the_child_process_command_line():
    options = SegmentOptions(model="brats18-segresnet8", device="cpu", flips=4, label_convention="brats2023",
                             uncertainty_map_kind="mutual_information",
                             clinical=ClinicalOptions(reference="flair", register="off", skull_strip="on", n4=False,
                                                      registration_kind="affine"),
                             uncertainty=UncertaintyOptions(methods="flips,dropout", samples=5, time_budget_s=30.0))
    argv = options.to_argv()
    assert "--no-n4" in argv and argv[argv.index("--registration-kind") + 1] == "affine"
    assert SegmentOptions.from_args(parse_segment([*argv, "--uncertainty", "unc"])) == options


def test_values_become_enums_checked_once_and_bad_ones_name_the_option_and_the_choices():
    options = SegmentOptions(device="cuda", clinical=ClinicalOptions(register="on"))
    assert options.device is Device.CUDA and options.clinical.register is Mode.ON
    assert options.clinical.registration_kind is TransformKind.RIGID
    with pytest.raises(ValueError, match="--device 'gpu' is not one of auto, cpu, cuda"):
        SegmentOptions(device="gpu")
    with pytest.raises(ValueError, match="--registration-kind 'elastic'"):
        ClinicalOptions(registration_kind="elastic")
    with pytest.raises(ValueError, match="--flips 0"):
        SegmentOptions(flips=0)
    with pytest.raises(ValueError, match="--reference 't1ce' is not one of t1, t1c, t2, flair"):
        ClinicalOptions(reference="t1ce")
    with pytest.raises(ValueError, match="--uncertainty-samples 0"):
        UncertaintyOptions(samples=0)


def test_argparse_choices_and_defaults_come_from_the_enums():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    assert actions["device"].choices == choices(Device) and actions["device"].default == "auto"
    assert actions["register"].choices == choices(Mode)
    assert actions["label_convention"].choices == choices(LabelConvention)
    assert actions["uncertainty_map_kind"].choices == choices(UncertaintyMap)
    assert actions["flips"].type is int and actions["flips"].default == 1


def test_parameter_node_values_become_the_same_options():
    parameters = {"modelId": "brats18-segresnet8", "device": "cpu", "referenceSequence": "t1c",
                  "registration": "auto", "skullStrip": "off", "biasCorrection": True, "registrationKind": "rigid",
                  "uncertaintyMethods": "ensemble,flips", "uncertaintyTimeBudget": 60.0, "uncertaintyMap": "entropy"}
    options = SegmentOptions.from_parameters(parameters.get)
    assert options == SegmentOptions(model="brats18-segresnet8", device="cpu",
                                     clinical=ClinicalOptions(reference="t1c", skull_strip="off", n4=True),
                                     uncertainty=UncertaintyOptions(methods="ensemble,flips", time_budget_s=60.0))
    # No T1c selected: the reference falls back to the default order; "none" means no sampling.
    fallback = SegmentOptions.from_parameters({**parameters, "uncertaintyMethods": "none"}.get,
                                              given=lambda key: key != "t1c")
    assert fallback.clinical.reference is None and fallback.uncertainty is None
