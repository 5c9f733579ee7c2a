"""Enrollment: ``NAME=clip.wav`` -> a checked clip -> the voice's embedding (speaker-conditioned models).

``vsep separate --enroll NAME=CLIP`` (and :class:`vsep.Separator`,
``vsep evaluate``) extracts the voice of the person in ``CLIP``: 10-60 s of
that person alone is best; at least ``MIN_SPEECH_S`` of speech is required.
``--enroll NAME`` alone names a voice stored with the model
(``embeddings.json``, e.g. its default target). ``NAME=A,B,...`` takes several
clips of the same person (soundbites from different recordings): each is
checked on its own, their speech counts together, and the voice is the mean
over all of them. Every clip is checked before
any other work: unreadable, silent, too little speech, or several voices
(two of its parts disagree: their embeddings' cosine falls below
``AGREEMENT``) is one line and exit 2; so is a name given twice or ``rest``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from vsep.lake import NAME_RE

MIN_SPEECH_S = 3.0
PART_S = 4.0  # the consistency check embeds parts of this much speech
TAIL_S = 1.6  # a GE2E model's embedding also averages a last, shorter part of at least this (one GE2E partial)
# least cosine between two parts' embeddings, per speaker encoder (chosen on the val bank with bench_enroll
# --agreement: learned 0.3 refuses 3.8 % of one-voice clips and catches 44 % of two-voice ones; GE2E 0.7
# refuses none and catches 83 %)
AGREEMENT = {"learned": 0.3, "ge2e": 0.7}
FRAME_S = 0.02
SPEECH_DB = 40.0  # frames within this of the clip's loudest (and above SILENCE_DBFS) count as speech
SILENCE_DBFS = -60.0
CLIP_SEP = ","  # NAME=A,B: several clips of one person


class EnrollError(ValueError):
    """An enrollment that cannot be used; the message is one line."""


def parse_specs(specs: Sequence[str]) -> list[tuple[str, str | None]]:
    """``["biden=clip.wav", "trump"]`` -> ``[("biden", "clip.wav"), ("trump", None)]``, names checked."""
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not NAME_RE.match(name):  # the lake's speaker names: also safe as file names
            raise EnrollError(f"--enroll {spec!r}: a name is letters, digits, '_', '-' and '.' (NAME=CLIP)")
        if name == "rest":
            raise EnrollError("--enroll rest: 'rest' is the name of what is left; choose another name")
        if any(n == name for n, _ in out):
            raise EnrollError(f"--enroll {name}: the name is given twice")
        if "=" in spec and not path:
            raise EnrollError(f"--enroll {spec!r}: no clip after '='")
        out.append((name, path or None))
    return out


def speech_frames(x: np.ndarray, rate: int) -> np.ndarray:
    """Which ``FRAME_S`` frames of ``x [samples]`` hold speech-level sound ``[frames]`` (bool)."""
    frame = max(1, int(FRAME_S * rate))
    n = len(x) // frame * frame
    if not n:
        return np.zeros(0, bool)
    power = (x[:n].reshape(-1, frame) ** 2).mean(axis=1)
    db = 10 * np.log10(power + 1e-12)
    return (db > SILENCE_DBFS) & (db > db.max() - SPEECH_DB)


def read_clips(name: str, spec: str, rate: int) -> np.ndarray | list[np.ndarray]:
    """``CLIP`` or ``A,B,...`` (:data:`CLIP_SEP`) -> the checked clip, or the list of checked clips of one person
    (each readable and not silent; at least ``MIN_SPEECH_S`` of speech among them)."""
    paths = spec.split(CLIP_SEP)
    if len(paths) == 1:
        return read_clip(name, spec, rate)
    if not all(paths):
        raise EnrollError(f"--enroll {name}={spec}: an empty clip path between '{CLIP_SEP}'")
    return checked_list(name, [read_clip(name, p, rate, alone=False) for p in paths], rate)


def read_clip(name: str, path: str, rate: int, alone: bool = True) -> np.ndarray:
    """The clip ``[samples]`` at ``rate`` with its silences left out; :class:`EnrollError` if unusable
    (``alone``: it must hold ``MIN_SPEECH_S`` of speech by itself, not only with other clips of the person)."""
    from vsep import audio, storage

    try:
        data = storage.read_bytes(path)
        x = audio.load(data, rate, name=path)
    except (audio.AudioError, OSError, storage.StorageError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EnrollError(f"--enroll {name}: cannot read {path} ({reason})") from None
    return checked(name, x, rate, path, min_speech_s=MIN_SPEECH_S if alone else 0.0)


def checked_list(name: str, clips: Sequence[np.ndarray], rate: int) -> list[np.ndarray]:
    """Clips of one person, each already :func:`checked`: together at least ``MIN_SPEECH_S`` of speech."""
    seconds = sum(len(c) for c in clips) / rate
    if seconds < MIN_SPEECH_S:
        raise EnrollError(f"--enroll {name}: its {len(clips)} clips have {seconds:.1f} s of speech; at least "
                          f"{MIN_SPEECH_S:.0f} s is needed (10-60 s of the person alone is best)")
    return list(clips)


def checked(name: str, x: np.ndarray, rate: int, what: str = "the clip",
            min_speech_s: float = MIN_SPEECH_S) -> np.ndarray:
    """The speech of clip ``x [samples]`` at ``rate`` (silences left out); :class:`EnrollError` if too little."""
    x = np.asarray(x, np.float32)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise EnrollError(f"--enroll {name}: {what} must be finite mono samples")
    speech = speech_frames(x, rate)
    if not speech.any():
        raise EnrollError(f"--enroll {name}: {what} is silent")
    seconds = speech.sum() * FRAME_S
    if seconds < min_speech_s:
        raise EnrollError(f"--enroll {name}: {what} has {seconds:.1f} s of speech; at least {MIN_SPEECH_S:.0f} s "
                          "is needed (10-60 s of the person alone is best)")
    frame = max(1, int(FRAME_S * rate))
    keep = np.repeat(speech, frame)
    return x[: len(keep)][keep]


def part_embeddings(model, clip: np.ndarray) -> np.ndarray:
    """Unit embeddings ``[count, D]`` of the clip's whole ``PART_S`` parts (``[0, D]`` for a shorter clip)."""
    part = int(PART_S * model.cfg.sample_rate)
    count = len(clip) // part
    if count < 1:
        return np.zeros((0, model.cfg.embed_dim), np.float32)
    parts = np.asarray(model.embed(clip[: count * part].reshape(count, part)))
    return parts / (np.linalg.norm(parts, axis=1, keepdims=True) + 1e-8)


def least_agreement(parts: np.ndarray) -> tuple[float, int, int]:
    """``(least cosine, part i, part j)`` between two of the unit ``parts [count, D]`` (``(1.0, 0, 0)`` for
    fewer than two)."""
    if len(parts) < 2:
        return 1.0, 0, 0
    sim = parts @ parts.T
    i, j = np.unravel_index(int(np.argmin(sim)), sim.shape)
    return float(sim[i, j]), int(i), int(j)


def part_agreement(model, clip: np.ndarray) -> tuple[float, int, int]:
    """:func:`least_agreement` of the clip's :func:`part_embeddings`."""
    return least_agreement(part_embeddings(model, clip))


def embed_clip(model, name: str, clip: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Unit embedding ``[D]`` of a checked clip, or of a list of checked clips of one person; refuses a clip
    of several voices.

    With at least two parts of ``PART_S`` of speech, a clip's parts are embedded and two parts whose cosine is
    below ``AGREEMENT[encoder]`` mean another voice is in the clip. A GE2E model's embedding is then the unit
    mean of the parts and of the rest of the clip (what it was trained on: means of 4 s windows), so
    enrolling is one pass of the encoder over the clip; a learned encoder embeds the whole clip once more.
    Several clips: the unit mean over all their vectors (a clip shorter than ``PART_S`` is one vector);
    clips are not compared with each other, since one person's recordings differ.
    """
    clips = [clip] if isinstance(clip, np.ndarray) else list(clip)
    label = (lambda k: "the clip") if len(clips) == 1 else (lambda k: f"clip {k + 1} of {len(clips)}")
    vectors = np.concatenate([_clip_vectors(model, name, c, label(k)) for k, c in enumerate(clips)])
    whole = vectors.mean(axis=0)
    return whole / (np.linalg.norm(whole) + 1e-8)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-8)


def _clip_vectors(model, name: str, clip: np.ndarray, what: str) -> np.ndarray:
    """The unit vectors ``[k, D]`` whose mean is the clip's embedding (:func:`embed_clip`), clip checked."""
    parts = part_embeddings(model, clip)
    least, i, j = least_agreement(parts)
    threshold = AGREEMENT[model.cfg.speaker_encoder]
    if least < threshold:
        a, b = sorted((i, j))
        raise EnrollError(f"--enroll {name}: {what} sounds like more than one voice (its speech at "
                          f"{a * PART_S:.0f}-{(a + 1) * PART_S:.0f} s and {b * PART_S:.0f}-{(b + 1) * PART_S:.0f} s "
                          f"agrees at {least:.2f}, below {threshold}); give a clip of the person alone")
    if model.cfg.speaker_encoder == "ge2e" and len(parts):
        tail = clip[len(parts) * int(PART_S * model.cfg.sample_rate):]
        if len(tail) >= TAIL_S * model.cfg.sample_rate:
            parts = np.concatenate([parts, _unit(np.asarray(model.embed(tail[None])))])
        return parts
    return _unit(np.asarray(model.embed(clip[None])))


def resolve(model, stored: dict[str, np.ndarray], specs: Sequence[tuple[str, object]]) -> dict[str, np.ndarray]:
    """Embeddings per voice name: a clip path (or ``A,B,...``) is read and checked (:func:`read_clips`), a
    waveform or a list of them is taken as already checked (:func:`checked`, as :func:`read_specs` and the API
    do), ``None`` takes a stored voice."""
    out = {}
    for name, clip in specs:
        if clip is None:
            if name not in stored:
                known = ", ".join(sorted(stored)) or "none"
                raise EnrollError(f"--enroll {name}: the model stores no voice of that name (stored: {known}); "
                                  f"give a clip: --enroll {name}=CLIP")
            out[name] = stored[name]
        else:
            out[name] = embed_clip(model, name, clip if isinstance(clip, (np.ndarray, list)) else
                                   read_clips(name, str(clip), model.cfg.sample_rate))
    return out


def enroll_option(parser: argparse.ArgumentParser) -> None:
    """``--enroll NAME=CLIP`` (repeatable), declared once for separate and evaluate."""
    parser.add_argument("--enroll", action="append", default=[], metavar="NAME=CLIP",
                        help="extract the voice of the person in CLIP (10-60 s of them alone) as NAME; "
                             f"NAME=A{CLIP_SEP}B{CLIP_SEP}...: several clips of that person, averaged; repeat for "
                             "debate mode (one WAV per voice, plus rest.wav); NAME alone: a voice stored with the "
                             "model. Needs a speaker-conditioned model")


def read_specs(specs: Sequence[str], model_dir: str | None) -> list | None:
    """``--enroll`` values -> ``[(name, clip [samples] or None)]`` at the model's rate, every clip read and checked."""
    from vsep import model_io

    if not specs:
        return None
    cfg, _, _ = model_io.read_config(str(model_dir or model_io.BUNDLED))
    return [(name, None if path is None else read_clips(name, path, cfg.sample_rate))
            for name, path in parse_specs(specs)]
