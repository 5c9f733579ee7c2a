"""collect -> prepare -> train -> evaluate -> export -> separate with every path on gs://,
against a real GCS emulator; buckets that do not exist; storage outages mid-run.

TensorFlow's gs:// reaches the emulator only through the proxy that
``gcs.tf_env()`` names, and only when set before its first gs:// access, so
every step that runs TensorFlow is a ``python -m vsep`` subprocess with that
environment. Beam and google-cloud-storage work in it too (the proxy relays
their plain-HTTP calls to the emulator and the token server).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from vsep import lake, storage

from gcs_emulator import LOCALHOST, GcsEmulator
from realdata import DATA, ROOT, TARGET, examples_of, needs_data, small_corpus

pytestmark = needs_data

MODEL_ARGS = [
    "--target", TARGET, "--depth", "3", "--filters", "4", "--frame-length", "256", "--frame-step", "64",
    "--fft-length", "256", "--patch-frames", "32", "--chunk-frames", "64",
]  # fmt: skip
TRAIN_ARGS = ["--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "4", "--validation-steps", "2",
              "--shuffle-buffer", "16", "--quiet"]  # fmt: skip
PREP_ARGS = ["--target", TARGET, "--window-s", "2", "--hop-s", "2", "--split-fractions", "0.5", "0.25", "0.25",
             "--num-shards", "2"]  # fmt: skip
SPEECH = DATA / "speakers" / TARGET / "phrases_again.mp3"


def _vsep(gcs: GcsEmulator, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m vsep ARGS`` with TensorFlow's gs:// pointed at the emulator."""
    env = {**os.environ, **gcs.tf_env(), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::FutureWarning"}
    return subprocess.run([sys.executable, "-m", "vsep", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _names(prefix: str) -> set[str]:
    """Files under ``prefix``, relative to it."""
    return {u[len(prefix) + 1 :] for u in storage.list_files(prefix)}


def _error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit 2 and one error line last on stderr, no traceback; returns the line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vsep {command}: error: "), proc.stderr[-3000:]
    assert sum(ln.startswith(f"vsep {command}: error") for ln in proc.stderr.splitlines()) == 1
    return last


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(gcs: GcsEmulator, corpus) -> tuple[str, str]:
    """A lake and a prepared data set under a fresh gs:// prefix (collect and prepare in this process)."""
    from beam_jobs import collect, prepare

    base = gcs.uri("e2e", uuid.uuid4().hex[:8])
    lake_uri, data_uri = storage.join(base, "lake"), storage.join(base, "data")
    collect.run(["--speakers", str(corpus / "speakers"), "--noise", str(corpus / "noise"), "--lake", lake_uri])
    manifest = prepare.run(["--lake", lake_uri, "--output", data_uri, *PREP_ARGS])
    assert all(manifest["counts"][s] > 0 for s in ("train", "val", "test")), manifest["counts"]
    return lake_uri, data_uri


def test_pipeline_end_to_end_on_gcs(gcs: GcsEmulator, prepared):
    lake_uri, data_uri = prepared
    base = lake_uri.rsplit("/", 1)[0]
    model, report, export, out = (storage.join(base, d) for d in ("model", "eval", "export", "separated"))

    _ok(_vsep(gcs, "train", "--data", data_uri, "--model-dir", model, *MODEL_ARGS, *TRAIN_ARGS))
    files = _names(model)
    assert {"config.json", "model.weights.h5", "history.jsonl", "train_log.csv", "checkpoints/state.json",
            "checkpoints/checkpoint"} <= files, files  # fmt: skip
    assert any(f.startswith("checkpoints/ckpt-2") for f in files) and any(f.startswith("tensorboard/") for f in files)
    history = [json.loads(ln) for ln in storage.read_text(storage.join(model, "history.jsonl")).splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["val_loss"]) for h in history)
    assert len(storage.read_text(storage.join(model, "train_log.csv")).splitlines()) == 3  # header + 2 epochs
    assert json.loads(storage.read_text(storage.join(model, "config.json")))["data"] == data_uri
    assert json.loads(storage.read_text(storage.join(model, "checkpoints", "state.json")))["epoch"] == 2

    _ok(_vsep(gcs, "evaluate", "--model", model, "--data", data_uri, "--output-dir", report, "--limit", "3",
              "--no-progress"))  # fmt: skip
    files = _names(report)
    assert {"summary.json", "summary.md", "report.html", "nmf_bases.npz"} <= files, files
    assert len([f for f in files if f.startswith("examples/")]) == 3
    assert any(f.startswith("report/") and f.endswith(".png") for f in files)
    summary = json.loads(storage.read_text(storage.join(report, "summary.json")))
    assert summary["examples"] == 3 and {"model", "mixture", "oracle_irm", "nmf"} <= set(summary["groups"]["all"])

    _ok(_vsep(gcs, "export", "--model", model, "--output", export))
    files = _names(export)
    assert {"saved_model.pb", "variables/variables.index", "assets/config.json"} <= files, files

    speech = storage.join(base, "in", SPEECH.name)
    storage.write_bytes(speech, SPEECH.read_bytes())
    printed = _ok(_vsep(gcs, "separate", "--model", model, "--output-dir", out, "--no-progress", speech))
    written = [storage.join(out, SPEECH.stem, f"{n}.wav") for n in (TARGET, "rest")]
    timelines = [storage.join(out, SPEECH.stem, f"{TARGET}.timeline.{ext}") for ext in ("json", "csv")]
    assert printed.split() == written + timelines
    assert json.loads(storage.read_text(timelines[0]))["speaker"] == TARGET
    import soundfile as sf

    info = sf.info(str(SPEECH))
    for uri in written:
        wav, rate = sf.read(io.BytesIO(storage.read_bytes(uri)))
        assert rate == info.samplerate and len(wav) == info.frames

    # the SavedModel, loaded from gs:// by TensorFlow alone, separates a waveform
    serve = _vsep_python(gcs, _SERVE, export)
    assert serve == {"target": [16000], "rest": [16000], "sample_rate": 16000, "finite": True}


_SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
x = tf.constant(np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype("float32"))
out = loaded.signatures["serving_default"](waveform=x)
info = loaded.signatures["info"]()
print(json.dumps({"target": out["target"].shape.as_list(), "rest": out["rest"].shape.as_list(),
                  "sample_rate": int(info["sample_rate"]),
                  "finite": bool(np.all(np.isfinite(out["target"].numpy())))}))
"""


def _vsep_python(gcs: GcsEmulator, script: str, *args: str):
    env = {**os.environ, **gcs.tf_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    return json.loads(_ok(proc).strip().splitlines()[-1])


def test_evaluate_folder_and_separate_inputs_on_gcs(gcs: GcsEmulator, capsys):
    """``vsep evaluate --folder gs://...`` and ``vsep separate gs://...`` inputs (no TensorFlow needed)."""
    import soundfile as sf

    from vsep import audio, evaluate, separate

    folder = gcs.uri("folder", uuid.uuid4().hex[:8])
    target = audio.load(SPEECH.read_bytes(), 16000)
    rest = audio.load((DATA / "noise" / "babble" / "noisex_babble.wav").read_bytes(), 16000)[: len(target)] * 0.3
    for name, x in (("mixture", target + rest), (TARGET, target), ("rest", rest)):
        storage.write_bytes(storage.join(folder, "one", f"{name}.wav"), audio.encode(x, 16000, "WAV"))
    storage.write_bytes(storage.join(folder, "broken", "mixture.wav"), b"not audio")
    storage.write_bytes(storage.join(folder, "notes.txt"), b"not an example")
    examples = list(evaluate.examples_from_folder(folder, TARGET, 16000))
    assert [e["id"] for e in examples] == ["one"]
    np.testing.assert_allclose(examples[0]["refs"][0], target, atol=1e-4)  # 16-bit WAV
    assert "skipped broken" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no <name>/mixture.wav"):
        list(evaluate.examples_from_folder(storage.join(folder, "missing"), TARGET, 16000))

    with pytest.raises(audio.AudioError, match=f"^{storage.join(folder, 'nope.mp3')}: no such file"):
        separate.open_input(storage.join(folder, "nope.mp3"))
    storage.write_bytes(storage.join(folder, "bad.mp3"), b"not audio at all")
    with pytest.raises(audio.AudioError, match=f"^{storage.join(folder, 'bad.mp3')}: cannot decode"):
        separate.open_input(storage.join(folder, "bad.mp3"))
    storage.write_bytes(storage.join(folder, SPEECH.name), SPEECH.read_bytes())
    opened = separate.open_input(storage.join(folder, SPEECH.name))
    info = sf.info(str(SPEECH))
    assert (opened.frames, opened.rate) == (info.frames, info.samplerate) and os.path.exists(opened.path)
    opened.cleanup()
    assert not os.path.exists(opened.path)  # the temporary copy is gone


# ---------------------------------------------------------------- bad input


def test_bucket_that_does_not_exist_exits_2_with_one_line(gcs: GcsEmulator):
    prepare = _vsep(gcs, "prepare", "--lake", "gs://no-such-bucket/lake", "--output", gcs.uri("nb", "data"),
                    "--target", TARGET)  # fmt: skip
    assert _error_line(prepare, "prepare") == "vsep prepare: error: gs://no-such-bucket: bucket does not exist"
    train = _vsep(gcs, "train", "--data", "gs://no-such-bucket/data", "--model-dir", gcs.uri("nb", "model"),
                  *MODEL_ARGS)  # fmt: skip
    assert _error_line(train, "train") == "vsep train: error: gs://no-such-bucket: bucket does not exist"
    assert not storage.list_files(gcs.uri("nb"))  # nothing written for either


def _without_credentials(gcs: GcsEmulator, home: Path, key_file: str | None = None) -> dict[str, str]:
    """The test environment with no Application Default Credentials at all (or a broken key file).

    No ``GOOGLE_APPLICATION_CREDENTIALS``, an empty home (no gcloud login) and
    ``NO_GCE_CHECK`` (no metadata-server probe, so nothing leaves the machine);
    the emulator stays up, so anything written in spite of the error would show.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::FutureWarning",
           "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"), "NO_GCE_CHECK": "true"}  # fmt: skip
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    if key_file:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = key_file
    return env


def test_missing_credentials_exit_2_with_one_line_before_writing(gcs: GcsEmulator, tmp_path: Path):
    speakers = tmp_path / "speakers" / TARGET
    speakers.mkdir(parents=True)
    (speakers / SPEECH.name).write_bytes(SPEECH.read_bytes())
    out = gcs.uri("nocred")
    commands = {
        "collect": ["--speakers", str(tmp_path / "speakers"), "--lake", f"{out}/lake"],
        "prepare": ["--lake", f"{out}/lake", "--output", f"{out}/data", *PREP_ARGS],
        "train": ["--data", f"{out}/data", "--model-dir", f"{out}/model", *MODEL_ARGS, *TRAIN_ARGS],
        "separate": ["--output-dir", f"{out}/separated", str(SPEECH)],
    }
    env = _without_credentials(gcs, tmp_path)
    for command, args in commands.items():
        proc = subprocess.run([sys.executable, "-m", "vsep", command, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=240)  # fmt: skip
        line = _error_line(proc, command)
        assert "no usable Google Cloud credentials" in line and "gcloud auth application-default login" in line
    # a key file that is not there: the same one line, naming the file
    env = _without_credentials(gcs, tmp_path, key_file=str(tmp_path / "missing-key.json"))
    proc = subprocess.run([sys.executable, "-m", "vsep", "collect", *commands["collect"]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    line = _error_line(proc, "collect")
    assert "no usable Google Cloud credentials" in line and "missing-key.json" in line
    assert not storage.list_files(out)  # nothing was written by any of them


@contextmanager
def _dropping(port: int) -> Iterator[list[int]]:
    """Listen on ``port`` and close every connection at once (a server that is going down).

    Yields a list that counts the connections.
    """
    seen: list[int] = []
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((LOCALHOST, port))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            seen.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
        srv.close()


def _wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_collect_through_a_storage_outage(gcs: GcsEmulator, corpus):
    """The emulator goes down before collect's first request and comes back 2 s later.

    The clients' retries carry the job through, or it fails with an error; either
    way the lake's index names only clips that exist.
    """
    lake_uri = gcs.uri("outage", uuid.uuid4().hex[:8], "lake")
    speakers = corpus / "speakers" / "biden"
    env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"}
    cmd = [sys.executable, "-m", "vsep", "collect", "--speakers", str(speakers), "--lake", lake_uri]
    gcs.stop()
    try:
        with _dropping(gcs.port) as seen:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_for(lambda: seen or proc.poll() is not None, 60, "collect's first request")
            time.sleep(1.0)  # dropped for 1 s more, then refused until the emulator is up again
    finally:
        gcs.start()
    out, err = proc.communicate(timeout=180)
    assert seen, "collect never reached the storage while it was down"
    index = storage.join(lake_uri, "index.jsonl")
    if proc.returncode == 0:
        entries = lake.read_index(lake_uri)
        assert len(entries) == len(list(speakers.iterdir())), out
    else:
        assert "error" in err.lower(), err[-3000:]
        entries = lake.read_index(lake_uri) if storage.exists(index) else []
    assert all(storage.exists(storage.join(lake_uri, e.clip)) for e in entries)


def test_prepare_killed_during_an_outage_leaves_no_manifest_naming_missing_shards(gcs: GcsEmulator, prepared):
    """Freeze the emulator as a re-run of prepare starts replacing the data set, kill the run, thaw it.

    The data set then has the old manifest and all its shards, or no manifest;
    never a manifest that names shards that are not there.
    """
    lake_uri, data_uri = prepared
    manifest_uri = storage.join(data_uri, "manifest.json")
    old = json.loads(storage.read_text(manifest_uri))
    env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"}
    cmd = [sys.executable, "-m", "vsep", "prepare", "--lake", lake_uri, "--output", data_uri, *PREP_ARGS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # commit() deletes the old manifest first: freeze the storage right then
        _wait_for(lambda: not storage.exists(manifest_uri) or proc.poll() is not None, 180, "prepare's commit")
        assert proc.poll() is None, f"prepare ended before its commit: {proc.communicate()[1][-3000:]}"
        gcs.freeze()
        try:
            time.sleep(1.0)
            assert proc.poll() is None, "prepare finished although the storage was frozen"
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            gcs.thaw()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    if storage.exists(manifest_uri):
        manifest = json.loads(storage.read_text(manifest_uri))
        assert manifest["run_id"] == old["run_id"]
        named = [storage.join(data_uri, n) for names in manifest["shards"].values() for n in names]
        assert all(storage.exists(u) for u in named)
        assert len(examples_of(data_uri)) == sum(manifest["counts"].values())
    # a reader finds no data set rather than a partial one
    from vsep.manifest import read_manifest

    if not storage.exists(manifest_uri):
        with pytest.raises(FileNotFoundError, match="no prepared data set"):
            read_manifest(data_uri)
