from dataclasses import replace

import numpy as np
import pytest
import torch

from TumorSegLib.inference import Predictor, flip_sets, resolve_device
from TumorSegLib.models import build_network, get_model
from TumorSegLib.options import Device
from TumorSegLib.volume import Volume


@pytest.mark.parametrize("gpu, expected", [(False, "cpu"), (True, "cuda")])
def test_auto_device_picks_the_gpu_only_when_one_is_usable(monkeypatch, gpu, expected):
    # Both branches on any machine: PyTorch's answer is replaced, not restated.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"  # an explicit CPU stays on the CPU even beside a GPU
    assert resolve_device(Device.AUTO) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU exists")
def test_asking_for_cuda_without_a_gpu_says_what_to_use():
    with pytest.raises(RuntimeError, match="--device cpu"):
        resolve_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")


def test_flip_sets_start_with_the_identity_and_cover_all_eight():
    assert flip_sets(1) == [()]
    assert len(set(flip_sets(8))) == 8
    with pytest.raises(ValueError):
        flip_sets(9)


class ConstantLogit(torch.nn.Module):
    """Returns logit = first input channel for each of three outputs (checks flips and averaging)."""

    def forward(self, x):
        return x[:, :1].repeat(1, 3, 1, 1, 1)


def test_flipped_passes_are_flipped_back_before_averaging():
    spec = get_model("brats18-segresnet8")
    predictor = Predictor(spec, "cpu", networks=[ConstantLogit()])
    image = np.random.default_rng(0).normal(size=(4, 20, 24, 28)).astype(np.float32)
    plain = predictor(Volume(image), flips=[()])
    flipped = predictor(Volume(image), flips=flip_sets(8))
    assert np.allclose(plain.array, flipped.array, atol=1e-6)
    assert np.allclose(plain.array[0], 1 / (1 + np.exp(-image[0])), atol=1e-6)


def test_real_network_output_has_the_input_grid_and_probabilities():
    spec = get_model("brats18-segresnet8")
    torch.manual_seed(0)
    predictor = Predictor(spec, "cpu", networks=[build_network(spec).eval()])
    image = Volume(np.zeros((4, 40, 36, 32), np.float32), (1.0, 1.0, 1.0), (3.0, 4.0, 5.0))
    reported = []
    out = predictor(image, progress=lambda fraction, message: reported.append(fraction))
    assert out.array.shape == (3, 40, 36, 32) and out.origin == (3.0, 4.0, 5.0)
    assert out.array.min() >= 0 and out.array.max() <= 1
    assert reported == [1.0]


def test_temperature_divides_each_channels_logits_before_the_sigmoid():
    from dataclasses import replace

    spec = replace(get_model("brats18-segresnet8"), temperature=(0.5, 1.0, 2.0))
    predictor = Predictor(spec, "cpu", networks=[ConstantLogit()])
    image = np.full((4, 8, 8, 8), 3.0, np.float32)  # logit 3 in every channel
    out = predictor(Volume(image))
    expected = 1 / (1 + np.exp(-3.0 / np.array([0.5, 1.0, 2.0])))  # sigmoid(logit / T) per channel
    assert np.allclose(out.array.reshape(3, -1), expected[:, None], atol=1e-6)
    assert out.array[0].min() > out.array[1].max() > out.array[2].max() > 0.5  # T < 1 sharpens, T > 1 softens


def test_the_embedded_models_run_at_temperature_one():
    spec = get_model("brats18-segresnet8")
    predictor = Predictor(spec, "cpu", networks=[ConstantLogit()])
    assert predictor.spec.temperature == (1.0, 1.0, 1.0)
    image = np.random.default_rng(3).normal(size=(4, 6, 6, 6)).astype(np.float32)
    assert np.allclose(predictor(Volume(image)).array[2], 1 / (1 + np.exp(-image[0])), atol=1e-6)


def test_progress_moves_with_every_sliding_window_not_once_per_pass():
    from TumorSegLib.inference import window_count

    spec = replace(get_model("brats18-segresnet8"), patch_size=(16, 16, 16))
    predictor = Predictor(spec, "cpu", networks=[ConstantLogit(), ConstantLogit()])
    image = Volume(np.zeros((4, 40, 36, 32), np.float32))
    reported = []
    predictor(image, progress=lambda fraction, message: reported.append((fraction, message)))
    windows = window_count((40, 36, 32), (16, 16, 16), 0.25)
    assert windows > 10 and len(reported) == 2 * windows
    fractions = [f for f, _ in reported]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.1
    assert reported[0][1] == "inference pass 1/2" and reported[-1][1] == "inference pass 2/2"


def test_cuda_running_out_of_memory_falls_back_and_says_so(monkeypatch):
    import torch

    from TumorSegLib import inference

    spec = replace(get_model("brats18-segresnet8"), patch_size=(16, 16, 16))
    predictor = Predictor(spec, "cpu", networks=[ConstantLogit()])
    image = Volume(np.full((4, 16, 16, 16), 3.0, np.float32))
    expected = predictor(image).array
    real, calls = inference.forward, []

    def failing_once(*args, **kwargs):  # as CUDA does when a batch does not fit
        calls.append(len(args[1]))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "forward", failing_once)
    assert np.allclose(predictor(image).array, expected)
    assert predictor.fallbacks == ["CUDA ran out of memory: inference moved to the CPU (slower, same result)"]
    # A GPU run is in bfloat16; a CPU that does not compute it natively goes on in float32, and the note says so.
    predictor.fallbacks, predictor.precision, calls[:] = [], "bfloat16", []
    monkeypatch.setattr(inference, "inference_precision", lambda device: "float32")
    assert np.allclose(predictor(image).array, expected)
    assert predictor.fallbacks == ["CUDA ran out of memory: inference moved to the CPU (slower, same result to "
                                   "rounding: in float32 there)"]


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_only_where_the_hardware_computes_it(monkeypatch, native):
    from TumorSegLib.inference import PRECISION_VARIABLE, inference_precision

    # Both answers on any machine: PyTorch's report of the CPU is replaced, not restated.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.delenv(PRECISION_VARIABLE, raising=False)
    assert inference_precision("cpu") == ("bfloat16" if native else "float32")  # emulated bfloat16 is slower
    assert inference_precision("cuda") == "bfloat16"
    monkeypatch.setenv(PRECISION_VARIABLE, "float32")
    assert inference_precision("cpu") == inference_precision("cuda") == "float32"
    monkeypatch.setenv(PRECISION_VARIABLE, " AUTO ")
    assert inference_precision("cuda") == "bfloat16"


def test_a_precision_not_understood_is_refused_naming_the_variable(monkeypatch):
    from TumorSegLib.inference import inference_precision

    monkeypatch.setenv("TUMORSEG_PRECISION", "half")
    with pytest.raises(ValueError, match=r"TUMORSEG_PRECISION='half'.*auto.*float32"):
        inference_precision("cpu")


def _real_predictions(monkeypatch, precision: str, threads: int) -> tuple[np.ndarray, Predictor]:
    from TumorSegLib import inference

    # The format is forced both ways, so the bfloat16 path is checked on CPUs that only emulate it too.
    monkeypatch.setattr(inference, "inference_precision", lambda device: precision)
    spec = get_model("brats18-segresnet8")
    image = np.random.default_rng(5).normal(size=(4, 48, 44, 40)).astype(np.float32)
    image[:, 14:30, 12:28, 10:26] += 2.5  # a bright block: some voxels the network calls tumour
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predictor = Predictor(spec, "cpu")
        return predictor(Volume(image)).array, predictor
    finally:
        torch.set_num_threads(before)


def test_bfloat16_inference_is_close_to_float32_and_the_same_on_any_thread_count(monkeypatch):
    exact, exact_predictor = _real_predictions(monkeypatch, "float32", 2)
    fast, fast_predictor = _real_predictions(monkeypatch, "bfloat16", 2)
    assert exact_predictor.precision == "float32" and fast_predictor.precision == "bfloat16"
    assert not np.array_equal(exact, fast)  # it did compute in another format
    assert np.abs(exact - fast).max() < 0.05
    assert np.mean((exact > 0.5) != (fast > 0.5)) < 1e-3
    # A batch worker runs one thread and `tumorseg segment` all cores: the same case must give the same result.
    assert np.array_equal(fast, _real_predictions(monkeypatch, "bfloat16", 1)[0])
