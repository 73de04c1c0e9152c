import numpy as np
import pytest

from Testing.conftest import brain_phantom
from TumorSegLib.qa import QAError, Severity, check_volume, run_qa
from TumorSegLib.training import find_cases
from TumorSegLib.volume import Volume, read_volume


def codes(findings):
    return {f.code for f in findings}


@pytest.mark.parametrize("make, code", [
    (lambda v: Volume(v.array[:, :, :2], v.spacing), "not_3d"),
    (lambda v: v.with_array(np.full(v.shape, 7.0, np.float32)), "constant"),
    (lambda v: v.with_array(np.where(v.array > 120, np.inf, v.array)), "not_finite"),
    (lambda v: Volume(v.array, v.spacing, v.origin, np.diag([1.0, 2.0, 1.0])), "bad_orientation"),
    (lambda v: Volume(v.array, (0.1, 0.1, 0.1)), "not_head"),
    (lambda v: v.with_array(v.array - 1024.0), "not_mri"),
])
def test_unusable_images_are_errors_with_a_reason(make, code):
    images, _ = brain_phantom(shape=(80, 90, 70))
    findings = check_volume(make(images["t1"]), "t1")
    assert code in codes(findings)
    assert all(f.severity is Severity.ERROR for f in findings if f.code == code)
    with pytest.raises(QAError):
        run_qa({"t1": make(images["t1"])}).raise_for_errors()


def test_thick_slices_and_oblique_acquisitions_are_warnings():
    images, _ = brain_phantom(shape=(80, 90, 30))
    angle = np.deg2rad(40)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    volume = Volume(images["t1"].array, (1.0, 1.0, 5.0), (0, 0, 0), rotation)
    report = run_qa({"flair": volume})
    assert codes(report.warnings) == {"anisotropic", "oblique"} and not report.errors
    report.raise_for_errors()  # warnings never block
    assert "5.0" in report.warnings[0].message or "5.0" in report.warnings[1].message


def test_a_finding_already_reported_is_not_added_again():
    from TumorSegLib.qa import Finding, QAReport, Severity

    swap = Finding(Severity.WARNING, "swapped_t1_t1c", "look swapped", "t1")
    report = QAReport([swap])
    report.add([Finding(Severity.WARNING, "swapped_t1_t1c", "look swapped", "t1"),
                Finding(Severity.WARNING, "swapped_t2_flair", "look swapped", "flair")])
    assert [(f.code, f.sequence) for f in report.findings] == [("swapped_t1_t1c", "t1"), ("swapped_t2_flair", "flair")]


def test_a_clean_phantom_passes():
    images, _ = brain_phantom(shape=(80, 90, 70))
    assert run_qa({"t1": images["t1"]}).findings == []


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["Brats18_2013_11_1", "Brats18_CBICA_AQQ_1", "Brats18_TCIA10_628_1"])
def test_swapped_sequences_are_flagged_on_real_cases(shared_data, case):
    files = find_cases(shared_data)[case]
    volumes = {key: read_volume(files[key]) for key in ("t1", "t1c", "t2", "flair")}
    assert run_qa(volumes).findings == []
    swapped_t2 = dict(volumes, t2=volumes["flair"], flair=volumes["t2"])
    [warning] = run_qa(swapped_t2).warnings
    assert warning.code == "swapped_t2_flair" and "check which series was given as T2 and as FLAIR" in warning.message
    swapped_t1 = dict(volumes, t1=volumes["t1c"], t1c=volumes["t1"])
    assert codes(run_qa(swapped_t1).warnings) == {"swapped_t1_t1c"}


def _stripped_brain(volumes):
    from TumorSegLib.intensity import foreground_mask

    first = next(iter(volumes.values()))
    return first.with_array(foreground_mask(np.stack([v.array for v in volumes.values()])).astype(np.uint8))


def _real_study(shared_data, case):
    """A shared case's four volumes, their brain and its atlas regions (one registration for several checks)."""
    from TumorSegLib.clinical import atlas_tissues

    files = find_cases(shared_data)[case]
    volumes = {key: read_volume(files[key]) for key in ("t1", "t1c", "t2", "flair")}
    brain = _stripped_brain(volumes)
    return volumes, brain, atlas_tissues(brain)


def test_a_t2_given_as_the_t1c_is_told_by_its_tissue_contrast(synthetic_case):
    from TumorSegLib.clinical import atlas_tissues
    from TumorSegLib.qa import check_weighting

    images = synthetic_case.images
    brain = _stripped_brain(images)
    assert check_weighting(images, brain, atlas_tissues) == []
    [finding] = check_weighting({"t1c": images["t2"], "flair": images["flair"]}, brain, atlas_tissues)
    assert (finding.code, finding.sequence, finding.severity) == ("unexpected_contrast", "t1c", Severity.WARNING)
    assert "given as T1c" in finding.message and "ventricles are bright" in finding.message
    [finding] = check_weighting({"t2": images["t1c"]}, brain, atlas_tissues)
    assert finding.sequence == "t2" and "darker than white matter" in finding.message


def test_the_contrast_check_says_nothing_of_an_image_too_small_for_the_atlas():
    from TumorSegLib.clinical import atlas_tissues
    from TumorSegLib.qa import check_weighting

    images, _ = brain_phantom(shape=(80, 90, 70))  # about 0.1 L: not a brain the atlas regions can be read in
    assert check_weighting(images, _stripped_brain(images), atlas_tissues) == []


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["Brats18_2013_20_1", "Brats18_CBICA_AQQ_1", "Brats18_TCIA10_637_1"])
def test_another_sequence_in_the_t1c_or_t2_place_is_flagged_on_real_cases(shared_data, case):
    from TumorSegLib.qa import check_sequences, check_weighting

    volumes, brain, tissues = _real_study(shared_data, case)
    assert check_weighting(volumes, brain, lambda _: tissues) == [] and check_sequences(volumes) == []
    # alone, as in a T1c-only run: only its own contrast can tell
    assert [f.sequence for f in check_weighting({"t1c": volumes["t2"]}, brain, lambda _: tissues)] == ["t1c"]
    # exchanged in the full study: the T1 correlations say it too
    found = check_weighting(dict(volumes, t1c=volumes["t2"], t2=volumes["t1c"]), brain, lambda _: tissues)
    assert {"t1c_unlike_t1", "t2_like_t1", "unexpected_contrast"} <= codes(found)
    assert {f.sequence for f in found if f.code == "unexpected_contrast"} == {"t1c", "t2"}


def _correlations(pairs: dict[str, float]) -> dict[tuple[str, str], float]:
    """{"t1-t1c": 0.6, ...} keyed both ways, as rank_correlations gives them."""
    out = {}
    for name, value in pairs.items():
        first, second = name.split("-")
        out[first, second] = out[second, first] = value
    return out


# The mean rank correlations of the 29 shared studies.
CORRECT = {"t1-t1c": 0.65, "t1-t2": -0.56, "t1-flair": 0.02, "t1c-t2": -0.41, "t1c-flair": -0.01, "t2-flair": 0.29}


def _exchanged(pairs: dict[str, float], first: str, second: str) -> dict[str, float]:
    rename = {first: second, second: first}
    out = {}
    for name, value in pairs.items():
        a, b = (rename.get(key, key) for key in name.split("-"))
        out[f"{a}-{b}"] = value
    return out


def test_an_exchange_is_told_by_the_other_sequences_and_only_when_every_witness_agrees():
    from TumorSegLib.qa.weighting import exchange_findings

    assert exchange_findings(_correlations(CORRECT)) == []
    [finding] = exchange_findings(_correlations(_exchanged(CORRECT, "t1c", "flair")))
    assert (finding.code, finding.sequence, finding.severity) == ("swapped_t1c_flair", "flair", Severity.WARNING)
    assert "look exchanged" in finding.message and "the T1 follows" in finding.message
    assert "the T2 follows" in finding.message and "Check which series" in finding.message
    # of two exchanges sharing the FLAIR, the one the witnesses show most strongly is named
    [finding] = exchange_findings(_correlations(_exchanged(CORRECT, "t1", "flair")))
    assert finding.code == "swapped_t1_flair"
    # one witness is enough when the other sequence is not given
    without_t2 = {name: value for name, value in _exchanged(CORRECT, "t1c", "flair").items() if "t2" not in name}
    assert [f.code for f in exchange_findings(_correlations(without_t2))] == ["swapped_t1c_flair"]
    # witnesses that disagree (one each way) name nothing
    disagree = dict(CORRECT, **{"t1-t1c": 0.0, "t1-flair": 0.3})
    assert exchange_findings(_correlations(disagree)) == []
    # no witness at all: a FLAIR + T1c study cannot tell its two apart this way
    assert exchange_findings(_correlations({"t1c-flair": 0.2})) == []


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["Brats18_2013_23_1", "Brats18_TCIA01_378_1", "Brats18_TCIA03_265_1"])
def test_a_flair_exchanged_with_a_t1_weighted_volume_is_flagged_on_real_cases(shared_data, case):
    # On these cases neither volume's own contrast tells the exchange (a FLAIR with white matter brighter than
    # grey); TCIA01_378 has the thinnest margins of the shared studies.
    from TumorSegLib.qa import check_weighting

    volumes, brain, tissues = _real_study(shared_data, case)
    assert check_weighting(volumes, brain, lambda _: tissues) == []
    found = check_weighting(dict(volumes, t1c=volumes["flair"], flair=volumes["t1c"]), brain, lambda _: tissues)
    assert codes(found) == {"swapped_t1c_flair"}
    found = check_weighting(dict(volumes, t1=volumes["flair"], flair=volumes["t1"]), brain, lambda _: tissues)
    assert "swapped_t1_flair" in codes(found) and "unexpected_contrast" not in codes(found)
