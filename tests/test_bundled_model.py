"""The model shipped in the package: it loads, fits the size limit, and separates recordings it never saw.

The held-out recordings are the test split of the data set it was trained
from, as ``vsep/models/default/splits.json`` names them (source files
relative to the data root). Mixtures are built here from the real files, so
a bundled model whose masks have collapsed to a constant (SI-SDR improvement
of exactly 0 dB) or whose config does not match its weights fails.
"""

from __future__ import annotations

import json

import numpy as np

from vsep import model_io
from vsep.evaluate import si_sdr

from realdata import DATA, needs_data

BUNDLED = model_io.BUNDLED
SECONDS = 6.0


def test_bundled_model_loads_and_fits_the_package_limit():
    mcfg, tcfg, doc = model_io.read_config(str(BUNDLED))
    assert sum(p.stat().st_size for p in BUNDLED.iterdir()) <= 25e6  # weights, model.int8.onnx, card, history
    assert doc["command"][:2] == ["vsep", "train"]  # how it was trained
    history = [json.loads(x) for x in (BUNDLED / "history.jsonl").read_text().splitlines() if x.strip()]
    assert history and all("val_si_sdri" in h for h in history)  # the learning curve
    card = (BUNDLED / "MODEL_CARD.md").read_text()
    assert mcfg.target in card and "held-out" in card
    model = model_io.load()
    assert model.cfg == mcfg and model.count_params() > 0


def _rms_normalised(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)


def held_out_mixtures(splits: dict, rate: int, count: int = 8):
    """``(kind, mixture, target)`` at 0 dB: held-out target speech + held-out other speech, noise, or
    another held-out target recording with its voice shifted (an impostor)."""
    from vsep import audio

    test = splits["test"]

    def clip(rel: str, n: int, offset: int = 0) -> np.ndarray | None:
        x = audio.load((DATA / rel).read_bytes(), rate, rel).astype(np.float32)
        x = np.resize(x, offset + n)[offset:] if len(x) < offset + n else x[offset : offset + n]
        return _rms_normalised(x) if np.sqrt(np.mean(x**2)) > 1e-3 else None

    n = int(SECONDS * rate)
    targets = sorted(test["target_recordings"], key=lambda r: -(DATA / r).stat().st_size)[:count]
    others = {"speech": test["speech_recordings"], "noise": test["noise_recordings"], "impostor": targets}
    for i, t in enumerate(targets):
        target = clip(t, n)
        if target is None:
            continue
        for kind, pool in others.items():
            if kind == "impostor":  # another held-out recording of the target, its voice 15% higher or lower
                other = clip(pool[(i + 1) % len(pool)], n + n // 4)
                other = None if other is None else audio.shift_voice(other, 15.0 if i % 2 else -13.0)[:n]
            else:
                other = clip(pool[(7 * i + 3) % len(pool)], n)
            if other is not None:
                mixture = target + other
                scale = 0.5 / np.max(np.abs(mixture))
                yield kind, mixture * scale, target * scale


def _snr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / (np.sum((ref - est) ** 2) + 1e-12)))


def held_out_improvements(model_dir: str | None, splits: dict) -> dict[str, list[float]]:
    """Improvements (dB) of the target's SI-SDR (``<kind>``) and SNR (``<kind>_snr``, level-aware) per
    mixture kind, separated by ``vsep.Separator``."""
    import vsep

    sep = vsep.Separator(model_dir)
    rate = sep.sample_rate
    out: dict[str, list[float]] = {}
    for kind, mixture, target in held_out_mixtures(splits, rate):
        est = sep.separate(mixture, rate)[sep.target]
        assert est.shape == mixture.shape and np.all(np.isfinite(est))
        out.setdefault(kind, []).append(si_sdr(target, est) - si_sdr(target, mixture))
        out.setdefault(f"{kind}_snr", []).append(_snr(target, est) - _snr(target, mixture))
    return out


@needs_data
def test_bundled_model_improves_held_out_recordings():
    splits = json.loads((BUNDLED / "splits.json").read_text())
    gains = held_out_improvements(None, splits)
    print({k: np.round(v, 2).tolist() for k, v in gains.items()})
    assert len(gains["speech"]) >= 5 and len(gains["noise"]) >= 5
    # the first bundled model (constant masks) scored 0.0 / 0.2 dB SI-SDRi here, and a model trained with the
    # scale-invariant loss alone, whose output is 29 dB too quiet, about 0.2 dB SNRi; this one about
    # 1.7 / 2.9 dB SI-SDRi and 3-4 dB SNRi (full scores in MODEL_CARD.md)
    medians = {k: float(np.median(v)) for k, v in gains.items()}
    assert medians["speech"] > 1.0 and medians["noise"] > 1.5, medians
    assert medians["speech_snr"] > 2.0 and medians["noise_snr"] > 2.0, medians
    # against a sound-alike (another recording of the target, its voice shifted 13-15%) the model is weak:
    # about 1.7-2.1 dB SNRi, but it must not pass the impostor untouched (0 dB) or boost it
    assert len(gains["impostor"]) >= 5 and medians["impostor_snr"] > 0.5, medians


@needs_data
def test_separate_without_model_uses_the_bundled_one(tmp_path, capsys):
    import soundfile as sf

    from vsep import separate

    mcfg, _, _ = model_io.read_config(str(BUNDLED))
    splits = json.loads((BUNDLED / "splits.json").read_text())
    src = DATA / splits["test"]["target_recordings"][0]
    rc = separate.main(["--output-dir", str(tmp_path), "--no-progress", str(src)])
    assert rc == 0, capsys.readouterr().err
    info = sf.info(str(src))
    for name in (mcfg.target, "rest"):
        out = sf.info(str(tmp_path / src.stem / f"{name}.wav"))
        assert (out.frames, out.samplerate) == (info.frames, info.samplerate)
