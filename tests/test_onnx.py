"""The ONNX graph (``model.onnx``) against the Keras model it is made from, the NumPy chunker against
the TensorFlow one, and how a runtime is chosen (a stale or missing graph is never served).

Models here have untrained random weights (a tiny one whose STFT hop is a quarter of the window, so
the graph's framing is checked for more than the bundled model's half-window hop) and the bundled
model itself; what is compared is the computation, sample by sample.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import config, model_io, onnx_model, runtime
from vsep.config import ModelConfig, SeparateConfig, TrainConfig

from realdata import DATA, TARGET, needs_data

tf = pytest.importorskip("tensorflow")
ort = pytest.importorskip("onnxruntime")

TINY = ModelConfig(target=TARGET, depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256,
                   patch_frames=32, chunk_frames=64)
SPEECH = DATA / "speakers" / TARGET / "quotes_2nd_amendment_people.mp3"  # 44.1 kHz stereo


def _speech(seconds: float, rate: int = 16000) -> np.ndarray:
    """``[2, n]`` real stereo speech at ``rate`` (a little noise, so the channels differ)."""
    import soxr

    x, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
    n = int(seconds * rate)
    x = soxr.resample(x, sr, rate)
    x = np.concatenate([x] * -(-n // len(x)))[:n].T  # looped when the recording is shorter
    noise = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    return np.ascontiguousarray(x + 0.01 * noise, dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A model directory with random weights (batch norm statistics randomised too) and its model.onnx."""
    from vsep.model import SeparationModel

    d = tmp_path_factory.mktemp("onnx") / "m"
    d.mkdir()
    model = SeparationModel(TINY).build_for()
    rng = np.random.default_rng(1)
    for layer in model.unet.layers:  # non-trivial batch norms, so folding them is checked
        if "bn" in layer.name or layer.name == "input_norm":
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * rng.uniform(0.5, 1.5, g.shape), b + rng.normal(0, 0.1, b.shape),
                               m + rng.normal(0, 0.1, m.shape), v * rng.uniform(0.5, 2.0, v.shape)])
    model_io.save_weights(model, str(d))
    model_io.write_config(str(d), model_io.config_document(TINY, TrainConfig()))
    onnx_model.write(model, d)
    return d


def _session(model_dir: Path):
    session = runtime.onnx_session(str(model_dir))
    assert session is not None, "model.onnx was not accepted"
    return session


def _run(session, rows, floor=0.0, wiener=False):
    return session.run(["sources"], {"rows": rows, "floor": np.array(floor, np.float32),
                                     "wiener": np.array(float(wiener), np.float32)})[0]


def _chunks(cfg: ModelConfig, rows: int) -> np.ndarray:
    from vsep.inference import chunk_geometry

    length, _ = chunk_geometry(cfg)
    x = _speech(3 * length / cfg.sample_rate)
    return np.stack([x[:rows, i * length : (i + 1) * length] for i in range(3)])  # [3, rows, L]


@needs_data
@pytest.mark.parametrize("floor", [0.0, 0.3])
def test_one_inverse_stft_keeps_the_target_and_rests_on_the_input(tiny_dir, floor):
    """The inference output needs one inverse STFT: the target is exactly the floored target mask's
    (as :meth:`separate_spectra` computes it with two), the rest is the input minus the unfloored target,
    so with no floor target and rest sum to the input; the ONNX graph does the same."""
    model = model_io.load(str(tiny_dir))
    chunks = _chunks(TINY, 2)[:, 0]  # [3, L] mono
    x = tf.constant(chunks)
    spectrum = model.stft(x)
    masks = model.masks(spectrum)
    est = model.separate_spectra(spectrum, masks, floor=floor)
    two = np.stack([model.istft(est[:, k], length=chunks.shape[-1]).numpy() for k in range(2)], axis=1)
    out = model(x, floor=floor).numpy()
    scale = np.abs(chunks).max()
    np.testing.assert_allclose(out[:, 0], two[:, 0], atol=2e-5 * scale)
    unfloored = model.istft(model.separate_spectra(spectrum, masks)[:, 0], length=chunks.shape[-1]).numpy()
    np.testing.assert_allclose(out[:, 1], chunks - unfloored, atol=2e-5 * scale)
    if not floor:
        np.testing.assert_allclose(out.sum(axis=1), chunks, atol=2e-5 * scale)
    graph = _run(_session(tiny_dir), chunks[:, None], floor)[:, :, 0]
    np.testing.assert_allclose(graph, out, atol=2e-5 * scale)


@needs_data
@pytest.mark.parametrize("floor,wiener", [(0.0, False), (0.3, False), (0.3, True)])
def test_graph_matches_keras_model(tiny_dir, floor, wiener):
    model = model_io.load(str(tiny_dir))
    chunks = _chunks(TINY, 2)
    out = _run(_session(tiny_dir), chunks, floor, wiener)  # [3, 2, 2, L]
    ref = model.separate_channels(tf.constant(chunks.mean(axis=1)), tf.constant(chunks), wiener=wiener,
                                  floor=floor).numpy()
    assert out.shape == ref.shape == (3, 2, 2, chunks.shape[-1])
    assert np.abs(ref).max() > 1e-3  # something to compare
    np.testing.assert_allclose(out, ref, atol=2e-5 * np.abs(ref).max())
    mono = _run(_session(tiny_dir), chunks[:, :1], floor, wiener)[:, :, 0]
    np.testing.assert_allclose(mono, model(tf.constant(chunks[:, 0]), wiener=wiener, floor=floor).numpy(),
                               atol=2e-5 * np.abs(ref).max())


@needs_data
def test_bundled_graph_is_current_and_matches():
    """The shipped graph (8-bit convolutions) was made from the shipped weights and computes what they compute,
    to within 8-bit arithmetic; it is what vsep separate serves."""
    from vsep import onnx_int8

    session = runtime.onnx_session(str(model_io.BUNDLED), onnx_int8.INT8_ONNX)
    assert session is not None, "the bundled model.int8.onnx is missing or stale"
    assert runtime.load(None).runtime == "onnx-int8"
    model = model_io.load()
    chunks = _chunks(model.cfg, 1)[:2]
    out = _run(session, chunks, 0.3)[:, :, 0]
    ref = model(tf.constant(chunks[:, 0]), floor=0.3).numpy()
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((out - ref) ** 2))
    assert snr > 25, f"the bundled 8-bit graph is {snr:.1f} dB SNR from the float model"


def test_subpixel_equals_transposed_convolution():
    """The decoder's stride-2 transposed convolutions, rewritten as convolution + depth-to-space."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    for size in (3, 4, 5):
        kernel = rng.standard_normal((size, size, 3, 6)).astype(np.float32)  # [kh, kw, out, in]
        bias = rng.standard_normal(3).astype(np.float32)
        x = rng.standard_normal((1, 8, 10, 6)).astype(np.float32)  # NHWC
        layer = tf.keras.layers.Conv2DTranspose(3, size, strides=2, padding="same")
        layer.build(x.shape)
        layer.set_weights([kernel, bias])
        ref = layer(x).numpy().transpose(0, 3, 1, 2)  # NCHW
        w, b, pads = onnx_model._subpixel(kernel, bias, size)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads, kernel_shape=list(w.shape[2:])),
                 helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD")]
        graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_model.OPSET)])
        proto.ir_version = 8
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"x": x.transpose(0, 3, 1, 2)})[0]
        np.testing.assert_allclose(out, ref, atol=1e-4, err_msg=f"kernel {size}")


def test_mirror_extend_numpy_equals_tensorflow():
    from vsep import inference

    rng = np.random.default_rng(0)
    for n, before, after in [(5, 0, 0), (5, 3, 2), (5, 12, 17), (1, 4, 4), (0, 3, 2), (40, 39, 81)]:
        x = rng.standard_normal((2, n)).astype(np.float32)
        ref = inference.mirror_extend(tf.constant(x), before, after).numpy()
        np.testing.assert_array_equal(inference.mirror_extend_np(x, before, after), ref)


@needs_data
@pytest.mark.parametrize("shifts", [1, 2])
def test_numpy_chunker_with_onnx_equals_tensorflow_graph(tiny_dir, shifts):
    """Same chunk grid, padding, overlap-add and shifts: ONNX-served separation equals the TF graph's."""
    from vsep import inference

    model = model_io.load(str(tiny_dir))
    x = _speech(2.37)  # several chunks, and a partial one at the end
    scfg = SeparateConfig(shifts=shifts, target_floor=0.3, runtime="onnx", precision="float32")
    served = runtime.load(str(tiny_dir), scfg)
    assert served.runtime == "onnx"
    kw = runtime.tf_options(scfg)
    ref = inference.build_separate_fn(model, **kw, channels=True)(tf.constant(x)).numpy()
    out = served.channels(x)
    assert out.shape == ref.shape == (2, 2, x.shape[1])
    np.testing.assert_allclose(out, ref, atol=5e-5 * np.abs(ref).max())
    mono_ref = inference.build_separate_fn(model, **kw)(tf.constant(x[0])).numpy()
    np.testing.assert_allclose(served.mono(x[0]), mono_ref, atol=5e-5 * np.abs(mono_ref).max())
    short = x[0, :100]  # shorter than a chunk: mirror-extended
    np.testing.assert_allclose(served.mono(short), inference.build_separate_fn(model, **kw)(tf.constant(short)),
                               atol=5e-5 * np.abs(mono_ref).max())


def test_runtime_choice_never_serves_a_stale_graph(tiny_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_dir, d)
    assert runtime.load(str(d)).runtime == "onnx"  # auto: the graph is current
    assert runtime.load(str(d), SeparateConfig(runtime="tf")).runtime == "tf"
    model = model_io.load(str(d))
    model.set_weights([w * 1.01 for w in model.get_weights()])
    model_io.save_weights(model, str(d))  # retrained: model.onnx is stale now
    assert runtime.onnx_session(str(d)) is None
    assert runtime.load(str(d)).runtime == "tf"
    with pytest.raises(ValueError, match="no model.onnx made from its weights"):
        runtime.load(str(d), SeparateConfig(runtime="onnx"))
    (d / onnx_model.ONNX).write_bytes(b"not a graph")
    assert runtime.load(str(d)).runtime == "tf"


@needs_data
def test_separate_with_onnx_never_imports_tensorflow(tiny_dir, tmp_path):
    """The fast start: the whole command runs without TensorFlow; outputs as the TF runtime writes them."""
    wav = tmp_path / "in.wav"
    sf.write(wav, _speech(1.5, 44100).T, 44100)
    code = ("import sys; from vsep import separate; rc = separate.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(rc)")
    outs = {}
    # TensorFlow in float32: on a CPU with bfloat16 units --precision auto would compute in bfloat16
    for rt, how in (("onnx", ["-c", code]), ("tf", ["-m", "vsep.cli", "separate", "--precision", "float32"])):
        out = tmp_path / rt
        proc = subprocess.run([sys.executable, *how, "--model", str(tiny_dir), "--runtime", rt,
                               "--no-progress", "-o", str(out), str(wav)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outs[rt] = [sf.read(out / "in" / f"{n}.wav", dtype="float32") for n in (TARGET, "rest")]
    for (a, ra), (b, rb) in zip(outs["onnx"], outs["tf"]):
        assert ra == rb == 44100 and a.shape == b.shape == (int(1.5 * 44100), 2)
        assert np.abs(a - b).max() <= 3 / 32768  # PCM16: within a few steps


def test_separate_runtime_onnx_without_graph_is_one_line(tmp_path, tiny_dir):
    d = tmp_path / "m"
    shutil.copytree(tiny_dir, d)
    (d / onnx_model.ONNX).unlink()
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    proc = subprocess.run([sys.executable, "-m", "vsep.cli", "separate", "--model", str(d), "--runtime", "onnx",
                           "-o", str(tmp_path / "out"), str(wav)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no model.onnx made from its weights" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_export_onnx_writes_current_graph(tmp_path, tiny_dir):
    from vsep import export

    d = tmp_path / "m"
    shutil.copytree(tiny_dir, d)
    (d / onnx_model.ONNX).unlink()
    assert export.main(["--model", str(d), "--onnx"]) == 0
    assert runtime.onnx_session(str(d)) is not None
    assert config.SeparateConfig().runtime == "auto"


@needs_data
def test_int8_graph_is_close_preferred_and_never_stale(tiny_dir, tmp_path, capsys):
    from vsep import export, onnx_int8

    d = tmp_path / "m"
    shutil.copytree(tiny_dir, d)
    calib = tmp_path / "calib.wav"
    sf.write(calib, _speech(6.0).T, 16000)
    assert export.main(["--model", str(d), "--onnx", "--int8"]) == 2  # no calibration: one line
    assert "--calibration" in capsys.readouterr().err
    assert export.main(["--model", str(d), "--onnx", "--int8", "--calibration", str(calib)]) == 0
    assert (d / onnx_int8.INT8_ONNX).exists()
    import onnx

    from vsep import onnx_model

    nodes = onnx.load(str(d / onnx_int8.INT8_ONNX)).graph.node
    quantized = [n for n in nodes if n.op_type.startswith("QLinear")]
    assert {n.op_type for n in quantized} == {"QLinearConv", "QLinearLeakyRelu", "QLinearConcat"}
    assert all(n.name.startswith(onnx_model.UNET_SCOPE) for n in quantized)  # only the U-Net is 8-bit
    assert [n.op_type for n in nodes].count("MatMul") == 4  # the STFT and its inverse stay float32
    served = runtime.load(str(d))
    assert served.runtime == "onnx-int8"  # preferred where current
    x = _speech(3.0)[0]
    ref = runtime.load(str(d), SeparateConfig(runtime="tf", precision="float32")).mono(x)
    ref = np.asarray(ref)
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((served.mono(x) - ref) ** 2))
    assert snr > 20, f"int8 graph differs from the float model by {snr:.1f} dB SNR"
    model = model_io.load(str(d))
    model_io.save_weights(model, str(d))  # same weights rewritten: same digest, still current
    assert runtime.load(str(d)).runtime == "onnx-int8"
    model.set_weights([w * 1.01 for w in model.get_weights()])
    model_io.save_weights(model, str(d))  # retrained: both graphs stale
    assert runtime.load(str(d)).runtime == "tf"


@pytest.mark.parametrize("levels", [1, 2])
def test_graph_of_a_model_with_a_time_rnn_matches_keras(tmp_path, levels):
    """The bidirectional GRUs (``--time-rnn``, at the bottleneck and with ``--time-rnn-levels 2`` on the
    first decoder level too) in the graph: ONNX's GRU against Keras', with their zero-initialised
    projections randomised so that each GRU's output reaches the masks."""
    from dataclasses import replace

    from vsep.inference import chunk_geometry
    from vsep.model import SeparationModel

    cfg = replace(TINY, time_rnn=4, time_rnn_levels=levels)
    model = SeparationModel(cfg).build_for()
    rng = np.random.default_rng(3)
    names = ["bottleneck_rnn"] + [f"dec{TINY.depth - 1}_rnn"] * (levels > 1)
    for rnn in map(model.unet.get_layer, names):
        rnn.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in rnn.get_weights()])
    model_io.save_weights(model, str(tmp_path))
    model_io.write_config(str(tmp_path), model_io.config_document(cfg, TrainConfig()))
    onnx_model.write(model, tmp_path)
    length, _ = chunk_geometry(cfg)
    rows = rng.normal(0, 0.1, (2, 2, length)).astype(np.float32)
    out = _run(_session(tmp_path), rows, 0.0)
    ref = model.separate_channels(tf.constant(rows.mean(axis=1)), tf.constant(rows), floor=0.0).numpy()
    without = replace(cfg, time_rnn=0, time_rnn_levels=1)
    plain = SeparationModel(without).build_for()
    for layer in plain.unet.layers:
        if layer.weights:
            layer.set_weights(model.unet.get_layer(layer.name).get_weights())
    assert np.abs(ref - plain.separate_channels(tf.constant(rows.mean(axis=1)), tf.constant(rows),
                                                floor=0.0).numpy()).max() > 1e-3 * np.abs(ref).max()
    np.testing.assert_allclose(out, ref, atol=2e-5 * np.abs(ref).max())
