"""Fine-tune the U-Net on a GPU machine that has JAX but no TensorFlow (Keras 3 on the JAX backend).

    KERAS_BACKEND=jax python3 tools/gpu_train.py --pack gpu_pack --init gpu_pack/init.npz \
        --config vsep/models/default/config.json --minutes 7 --out $OUT

The U-Net is :func:`vsep.unet.build_unet`, the same code the TensorFlow model uses; around it this
script computes what :class:`vsep.model.SeparationModel` computes in training (STFT, level-normalised
log-magnitude, masks with the Nyquist bin repeated, masked mixture, inverse STFT, the ``snr`` loss)
with array functions that take ``xp`` (NumPy here for the tests against the TensorFlow layers,
``jax.numpy`` on the GPU). Examples are mixed on the device from ``tools/gpu_pack.py``'s windows with
the augmentation of ``vsep.dataset.remix`` (new interference at a random TIR, resampled voices,
random channels, gain). Snapshots of the U-Net's weights (``unet_<step>.npz``, the order of
``get_weights()``) go to ``--out`` every ``--save-every`` minutes; ``tools/gpu_import.py`` turns one
into a model directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVEL_FLOOR = 1e-5  # vsep.model.LEVEL_FLOOR
EPS = 1e-8  # vsep.model.EPS
CAP_DB = 30.0  # vsep.model.SISDR_CAP_DB


# ---- the model's arithmetic around the U-Net, for numpy or jax.numpy


def hann(n: int, xp=np):
    """Periodic Hann window (``tf.signal.hann_window``)."""
    return 0.5 - 0.5 * xp.cos(2 * np.pi * xp.arange(n) / n)


def stft(x, cfg, xp=np):
    """``[B, n]`` -> complex ``[B, frames, fft_length // 2 + 1]``, as :class:`vsep.stft.STFT`."""
    pad = cfg.frame_length - cfg.frame_step
    x = xp.pad(x, ((0, 0), (pad, pad)))
    frames = -(-x.shape[1] // cfg.frame_step)
    x = xp.pad(x, ((0, 0), (0, (frames - 1) * cfg.frame_step + cfg.frame_length - x.shape[1])))
    idx = np.arange(frames)[:, None] * cfg.frame_step + np.arange(cfg.frame_length)[None, :]
    return xp.fft.rfft(x[:, idx] * hann(cfg.frame_length, xp), n=cfg.fft_length, axis=-1)


def istft(spec, length: int, cfg, xp=np):
    """Complex ``[B, frames, bins + 1]`` -> ``[B, length]``, as :class:`vsep.stft.InverseSTFT`."""
    n, step = cfg.frame_length, cfg.frame_step
    w = hann(n, xp)
    overlaps = -(-n // step)
    denom = xp.pad(w**2, (0, overlaps * step - n)).reshape(overlaps, step).sum(0)
    wi = w / xp.tile(denom, overlaps)[:n]
    frames = xp.fft.irfft(spec, n=cfg.fft_length, axis=-1)[..., :n] * wi  # [B, T, n]
    b, t = frames.shape[0], frames.shape[1]
    total = (t - 1) * step + n
    # overlap-add: frame k covers [k*step, k*step + n); n is a multiple of step
    parts = frames.reshape(b, t, n // step, step)
    out = xp.zeros((b, t + n // step - 1, step), frames.dtype)
    for j in range(n // step):
        if xp is np:
            out[:, j : j + t] += parts[:, :, j]
        else:
            out = out.at[:, j : j + t].add(parts[:, :, j])
    pad = n - step
    return out.reshape(b, total)[:, pad : pad + length]


def features(spec, cfg, xp=np):
    """U-Net input ``[B, T, bins, 1]``: log1p of the magnitudes over their mean (``input_norm='mean'``)."""
    mag = xp.sqrt(spec.real**2 + spec.imag**2 + 1e-12)[:, :, : cfg.bins]
    mag = mag / (mag.mean(axis=(1, 2), keepdims=True) + LEVEL_FLOOR)
    return xp.log1p(mag)[..., None]


def db(x, xp=np):
    return 10.0 * xp.log10(x)


def snr_loss(mixture, sources, est, xp=np):
    """The ``snr`` loss of :meth:`vsep.model.SeparationModel._loss`: ``[B, n]``, ``[B, 2, n]`` x2 -> scalar."""
    signal = (sources**2).sum(-1)
    error = ((sources - est) ** 2).sum(-1)
    s = db((signal + EPS) / (error + 10.0 ** (-CAP_DB / 10.0) * signal + EPS), xp)
    valid = (signal > 1e-6).astype(np.float32)
    quiet = db(((est**2).sum(-1) + EPS) / ((mixture[:, None] ** 2).sum(-1) + EPS) + 1e-3, xp) / 10.0
    return (-s / 10.0 * valid + quiet * (1.0 - valid)).mean()


# ---- examples mixed on the device (jax only)


def channel_gain(key, batch, bins, prob, max_db, lowpass_prob):
    """As ``vsep.dataset.channel_gain``: random smooth gain curves ``[batch, bins]``."""
    import jax
    import jax.numpy as jnp

    k = jax.random.split(key, 5)
    u = jnp.linspace(0.0, 1.0, bins)
    logf = jnp.log1p(63.0 * u) / jnp.log(64.0)
    order = jnp.arange(1, 5, dtype=jnp.float32)
    amp = jax.random.uniform(k[0], (batch, 4), minval=-max_db, maxval=max_db) / 2.0 ** (order - 1)
    phase = jax.random.uniform(k[1], (batch, 4), maxval=2 * np.pi)
    gain_db = (amp[:, :, None] * jnp.cos(np.pi * order[None, :, None] * logf + phase[:, :, None])).sum(1)
    cutoff = jax.random.uniform(k[2], (batch, 1), minval=0.35, maxval=0.95)
    lowpass = jax.random.uniform(k[3], (batch, 1)) < lowpass_prob
    gain_db = gain_db - jnp.where(lowpass, 60.0 * jax.nn.sigmoid((u - cutoff) / 0.01), 0.0)
    use = jax.random.uniform(k[4], (batch, 1)) < prob
    return jnp.where(use, 10.0 ** (gain_db / 20.0), 1.0)


def channel_eq(key, x, prob, max_db, lowpass_prob):
    import jax.numpy as jnp

    gain = channel_gain(key, x.shape[0], x.shape[1] // 2 + 1, prob, max_db, lowpass_prob)
    return jnp.fft.irfft(jnp.fft.rfft(x) * gain, n=x.shape[1])


def shift_voice(x, factor):
    """As ``vsep.dataset.shift_voice``: each row resampled by ``factor [B]`` (wrapping), linear."""
    import jax.numpy as jnp

    n = x.shape[1]
    pos = jnp.mod(jnp.arange(n, dtype=jnp.float32)[None, :] * factor[:, None], n)
    lo = jnp.floor(pos).astype(jnp.int32)
    frac = pos - lo
    hi = jnp.mod(lo + 1, n)
    return jnp.take_along_axis(x, lo, 1) * (1 - frac) + jnp.take_along_axis(x, hi, 1) * frac


def band_matrix(bins: int, bands: int = 32, rate: int = 16000) -> np.ndarray:
    """``[bins, bands]`` triangular weights on a log-frequency axis (60 Hz..Nyquist), rows summing to 1."""
    f = np.linspace(0, rate / 2, bins)
    centres = np.geomspace(60.0, rate / 2, bands)
    pos = np.interp(np.log(np.maximum(f, 60.0)), np.log(centres), np.arange(bands))
    w = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(bands)[None, :]))
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def chain_swap(x, donor, bands, max_db: float = 15.0):
    """``x [B, L]`` through the recording chain of ``donor [B, L]``: its long-term spectral envelope
    (``bands [L // 2 + 1, nb]`` smoothing) replaced by the donor's, within +-``max_db``, level kept."""
    import jax.numpy as jnp

    def env_db(y):
        power = jnp.abs(jnp.fft.rfft(y)) ** 2  # [B, F]
        per_band = power @ bands / (bands.sum(0) + 1e-9)  # [B, nb]
        return 10.0 * jnp.log10(per_band + 1e-10)

    diff = jnp.clip(env_db(donor) - env_db(x), -max_db, max_db)
    diff = diff - diff.mean(-1, keepdims=True)
    gain = 10.0 ** ((diff @ bands.T) / 20.0)  # [B, F]
    return jnp.fft.irfft(jnp.fft.rfft(x) * gain, n=x.shape[1])


def make_batch(key, targets, rests, batch: int, length: int, tcfg: dict, bands=None):
    """``(mixture [B, L], sources [B, 2, L])`` from random windows of ``targets [K, n]`` and ``rests [M, n]``."""
    import jax
    import jax.numpy as jnp

    k = jax.random.split(key, 16)
    n = targets.shape[1]
    ti = jax.random.randint(k[0], (batch,), 0, targets.shape[0])
    ri = jax.random.randint(k[1], (batch,), 0, rests.shape[0])
    to = jax.random.randint(k[2], (batch,), 0, n - length + 1)
    ro = jax.random.randint(k[3], (batch,), 0, n - length + 1)
    cols = jnp.arange(length)[None, :]
    target = targets[ti[:, None], to[:, None] + cols]
    rest = rests[ri[:, None], ro[:, None] + cols]
    size = jax.random.uniform(k[4], (batch,), maxval=tcfg["other_shift"])
    factor = jnp.where(jax.random.uniform(k[5], (batch,)) < 0.5, 1 + size, 1 / (1 + size))
    rest = jnp.where((jax.random.uniform(k[6], (batch,)) < tcfg["other_shift_prob"])[:, None],
                     shift_voice(rest, factor), rest)
    if tcfg.get("chain_swap", 0.0) > 0:  # interference through a target's chain, targets through others'
        donor_t = targets[jax.random.randint(k[12], (batch,), 0, targets.shape[0])[:, None], to[:, None] + cols]
        donor_r = rests[jax.random.randint(k[13], (batch,), 0, rests.shape[0])[:, None], ro[:, None] + cols]
        swap_r = jax.random.uniform(k[14], (batch,)) < tcfg["chain_swap"]
        swap_t = jax.random.uniform(k[15], (batch,)) < tcfg["chain_swap"]
        rest = jnp.where(swap_r[:, None], chain_swap(rest, donor_t, bands), rest)
        target = jnp.where(swap_t[:, None], chain_swap(target, donor_r, bands), target)
    kind = jax.random.uniform(k[7], (batch,))  # 7.5 %: target alone; 7.5 %: interference alone
    rest = jnp.where((kind < tcfg["alone"])[:, None], 0.0, rest)
    target = jnp.where((kind > 1 - tcfg["alone"])[:, None], 0.0, target)
    e_t, e_r = (target**2).sum(-1), (rest**2).sum(-1)
    tir = jax.random.uniform(k[8], (batch,), minval=tcfg["tir_db"][0], maxval=tcfg["tir_db"][1])
    scale = jnp.sqrt(e_t / (e_r * 10.0 ** (tir / 10.0) + 1e-12))
    rest = rest * jnp.where((e_t > 1e-6) & (e_r > 1e-6), scale, 1.0)[:, None]
    target = channel_eq(k[9], target, tcfg["eq_prob"], tcfg["eq_db"], tcfg["lowpass_prob"])
    rest = channel_eq(k[10], rest, tcfg["eq_prob"], tcfg["eq_db"], tcfg["lowpass_prob"])
    gain = 10.0 ** (jax.random.uniform(k[11], (batch, 1), minval=tcfg["gain_db"][0],
                                       maxval=tcfg["gain_db"][1]) / 20.0)
    target, rest = target * gain, rest * gain
    mixture = target + rest
    fix = jnp.minimum(1.0, 0.99 / (jnp.abs(mixture).max(-1, keepdims=True) + 1e-12))
    return mixture * fix, jnp.stack([target * fix, rest * fix], axis=1)


# ---- training


def load_pack(pack: Path):
    import soundfile as sf

    info = json.loads((pack / "pack.json").read_text())
    n = info["window"]
    out = []
    for name, count in (("targets", info["targets"]), ("rests", info["rests"])):
        x, _ = sf.read(pack / f"{name}.ogg", dtype="float32")
        x = np.pad(x, (0, max(0, count * n - x.size)))[: count * n]
        out.append(x.reshape(count, n))
    return out[0], out[1], info


def train(args) -> int:
    import jax
    import jax.numpy as jnp
    import keras

    from vsep import config
    from vsep.config import ModelConfig
    from vsep.unet import build_unet

    doc = json.loads(Path(args.config).read_text())
    cfg = config.from_dict(ModelConfig, doc["model"])
    tcfg = {"chain_swap": 0.0, "other_shift": 0.15, "other_shift_prob": 0.5, "alone": 0.075, "tir_db": (-6.0, 6.0),
            "eq_prob": 0.5, "eq_db": 6.0, "lowpass_prob": 0.25, "gain_db": (-6.0, 6.0)}
    tcfg.update(json.loads(args.augment) if args.augment else {})
    print("devices", jax.devices(), "keras", keras.__version__, "jax", jax.__version__, flush=True)
    targets, rests, info = load_pack(Path(args.pack))
    print("pack", info["targets"], "targets", info["rests"], "rests", flush=True)
    targets, rests = jnp.asarray(targets), jnp.asarray(rests)
    unet = build_unet(cfg, args.precision)
    if args.init:
        init = np.load(args.init)
        unet.set_weights([init[f"w{i:03d}"].astype(np.float32) for i in range(len(init.files))])
    length = cfg.patch_samples()
    bands = jnp.asarray(band_matrix(length // 2 + 1, rate=cfg.sample_rate))
    steps_total = args.steps
    opt = keras.optimizers.Adam(args.learning_rate)
    opt.build(unet.trainable_variables)
    # the learning rate follows a cosine over the run's *time* (to 5 % at --minutes), so that the last
    # snapshot ends the decay however many steps the device manages
    lr_index = [id(v) for v in opt.variables].index(id(opt._learning_rate))

    def loss_fn(tv, ntv, mixture, sources):
        spec = stft(mixture, cfg, jnp)
        masks, ntv = unet.stateless_call(tv, ntv, features(spec, cfg, jnp), training=True)
        masks = jnp.concatenate([masks, masks[:, :, -1:]], axis=2).astype(jnp.float32)
        est = jnp.stack([istft(spec * masks[..., k], length, cfg, jnp) for k in range(2)], axis=1)
        return snr_loss(mixture, sources, est, jnp), ntv

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def step(state, key):
        tv, ntv, ov = state
        mixture, sources = make_batch(key, targets, rests, args.batch_size, length, tcfg, bands)
        (loss, ntv), grads = grad_fn(tv, ntv, mixture, sources)
        tv, ov = opt.stateless_apply(ov, grads, tv)
        return (tv, ntv, ov), loss

    state = ([v.value for v in unet.trainable_variables], [v.value for v in unet.non_trainable_variables],
             [v.value for v in opt.variables])
    key = jax.random.PRNGKey(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, last_save, losses, log = time.time(), time.time(), [], []
    for i in range(1, steps_total + 1):
        key, sub = jax.random.split(key)
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        lr = args.learning_rate * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        state[2][lr_index] = jnp.asarray(lr, state[2][lr_index].dtype)
        state, loss = step(state, sub)
        losses.append(loss)
        done = time.time() - t0 > args.minutes * 60 or i == steps_total
        if i % args.log_every == 0 or done:
            mean = float(jnp.mean(jnp.stack(losses)))
            losses = []
            log.append({"step": i, "loss": mean, "lr": float(lr), "seconds": round(time.time() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
        if time.time() - last_save > args.save_every * 60 or done:
            save(unet, state, out / f"unet_{i:06d}.npz")
            last_save = time.time()
            (out / "gpu_train_log.json").write_text(json.dumps({"args": vars(args), "augment": tcfg, "log": log}))
        if done:
            break
    return 0


def save(unet, state, path: Path) -> None:
    """The U-Net's ``get_weights()`` after ``state``, as ``w000``, ``w001``, ... in ``path``."""
    tv, ntv, _ = state
    for v, x in zip(unet.trainable_variables, tv):
        v.assign(x)
    for v, x in zip(unet.non_trainable_variables, ntv):
        v.assign(x)
    np.savez(path, **{f"w{i:03d}": np.asarray(w) for i, w in enumerate(unet.get_weights())})
    print("saved", path, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", required=True, help="folder written by tools/gpu_pack.py")
    p.add_argument("--config", required=True, help="a model's config.json (its 'model' section is used)")
    p.add_argument("--init", help="U-Net weights to start from (tools/gpu_import.py --export)")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=7.0, help="stop after this much training time")
    p.add_argument("--steps", type=int, default=10**7, help="stop after this many steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--precision", default="mixed_bfloat16", choices=("float32", "mixed_bfloat16"))
    p.add_argument("--augment", help="JSON overriding the augmentation settings")
    p.add_argument("--save-every", type=float, default=2.0, help="minutes between weight snapshots")
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
