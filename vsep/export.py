"""``vsep export``: a SavedModel for serving, STFT and inverse STFT inside the graph.

    vsep export [--model DIR] [--shifts N] [--wiener] --output EXPORT_DIR
    vsep export [--model DIR] --onnx      # DIR/model.onnx, for onnxruntime
    vsep export [--model DIR] --onnx --int8 --calibration RECORDINGS   # and DIR/model.int8.onnx
    vsep export --model DIR --save-defaults --target-floor 0             # DIR/separate.json: its own defaults

Signature ``serving_default``: ``waveform`` float32 ``[samples]``, mono at the
model's sample rate -> ``target`` and ``rest`` float32 ``[samples]``. It runs
the same chunking and overlap-add as ``vsep separate`` (:mod:`vsep.inference`),
so any length works. Load it with ``tf.saved_model.load`` alone; the model's
``config.json`` is copied into ``assets/`` and the rate is also a constant
(``sample_rate``) and a signature (``info``). ``--shifts`` and ``--wiener``
are baked into the graph and recorded in that ``config.json`` under ``separate``.

A speaker-conditioned model serves its default voice as ``serving_default`` and
has two more signatures: ``embed`` (``clip`` float32 ``[samples]``, the person
alone -> ``embedding`` ``[D]``) and ``enrolled`` (``waveform`` and ``embedding`` ->
``target`` and ``rest``): enroll once, separate many.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from vsep.config import SeparateConfig, add_arguments, from_namespace, to_dict


def build_module(model, scfg: SeparateConfig | None = None, stored: dict | None = None):
    """A ``tf.Module`` wrapping the model with the serving functions (``scfg``: how it separates;
    ``stored``: a conditioned model's named embeddings)."""
    import numpy as np
    import tensorflow as tf

    from vsep.inference import build_separate_fn
    from vsep.model_io import with_precision

    scfg = scfg or SeparateConfig()
    model = with_precision(model, scfg.precision)  # the served graph tracks the model it computes with
    from vsep.runtime import tf_options

    cfg = model.cfg
    default = None
    if cfg.embed_dim:  # a conditioned model: its default voice (stored embedding) serves serving_default
        if cfg.target not in (stored or {}):
            raise ValueError(f"a speaker-conditioned model needs its default voice {cfg.target!r} "
                             "(embeddings.json) for serving_default")
        default = np.asarray(stored[cfg.target], np.float32)[None]
    separate = build_separate_fn(model, **tf_options(scfg), embeddings=default)

    class VsepServing(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="vsep")
            if cfg.embed_dim:  # its variables, not the Keras model: saving that traces a call without a voice
                self.variables_ = [w.value for w in model.weights]
                self.voices = separate.voices  # the default voice
            else:
                self.model = model
            self.sample_rate = tf.Variable(cfg.sample_rate, trainable=False, dtype=tf.int32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
        def serve(self, waveform):
            out = separate(waveform)
            return {"target": out[0], "rest": out[1]}

        if cfg.embed_dim:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform"),
                                          tf.TensorSpec([cfg.embed_dim], tf.float32, name="embedding")])
            def enrolled(self, waveform, embedding):
                out = separate.enrolled(waveform, embedding[None])
                return {"target": out[0], "rest": out[1]}

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="clip")])
            def embed(self, clip):
                """An enrollment clip (mono, the model's rate, the person alone) -> its embedding ``[D]``
                (as :func:`vsep.enroll.embed_clip` makes it, without its checks)."""
                return {"embedding": _embed_graph(model, clip)}

        @tf.function(input_signature=[])
        def info(self):
            return {"sample_rate": self.sample_rate.read_value(), "target": tf.constant(model.cfg.target)}

    return VsepServing()


def _embed_graph(model, clip):
    """:func:`vsep.enroll.embed_clip` in TensorFlow: a GE2E model averages its ``PART_S`` parts and a tail of at
    least ``TAIL_S``; a learned encoder (or a clip under one part) embeds the whole clip. ``[samples]`` -> ``[D]``."""
    import tensorflow as tf

    from vsep.enroll import PART_S, TAIL_S

    def unit(e):
        return tf.math.l2_normalize(e, axis=-1)

    def whole():
        return unit(model.embed(clip[None])[0])

    if model.cfg.speaker_encoder != "ge2e":
        return whole()
    part, tail_min = int(PART_S * model.cfg.sample_rate), int(TAIL_S * model.cfg.sample_rate)
    count = tf.shape(clip)[0] // part

    def by_parts():
        parts = unit(model.embed(tf.reshape(clip[: count * part], [count, part])))
        tail = clip[count * part:]
        parts = tf.cond(tf.shape(tail)[0] >= tail_min,
                        lambda: tf.concat([parts, unit(model.embed(tail[None]))], axis=0), lambda: parts)
        return unit(tf.reduce_mean(parts, axis=0))

    return tf.cond(count >= 1, by_parts, whole)


def export(model_dir: str | None, output: str, scfg: SeparateConfig | None = None) -> str:
    """Write the SavedModel of ``model_dir`` (default: bundled) to ``output``; returns ``output``."""
    import tensorflow as tf

    from vsep import model_io, storage

    scfg = scfg or SeparateConfig()
    scfg.validate()
    model = model_io.load(model_dir)
    module = build_module(model, scfg, model_io.read_embeddings(str(model_dir or model_io.BUNDLED)))
    signatures = {"serving_default": module.serve, "info": module.info}
    if model.cfg.embed_dim:
        signatures.update(enrolled=module.enrolled, embed=module.embed)
    tf.saved_model.save(module, output, signatures=signatures)
    _, _, doc = model_io.read_config(str(model_dir or model_io.BUNDLED))
    doc = {**doc, "separate": to_dict(scfg)}
    storage.write_text(storage.join(output, "assets", "config.json"), json.dumps(doc, indent=2, sort_keys=True))
    return output


def export_onnx(model_dir: str | None) -> str:
    """Write ``model_dir/model.onnx`` (local directories only); returns its path."""
    from vsep import model_io, onnx_model

    model_dir = str(model_dir or model_io.BUNDLED)
    if "://" in model_dir:
        raise ValueError(f"{model_dir}: --onnx writes into a local model directory")
    return str(onnx_model.write(model_io.load(model_dir), model_dir))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vsep export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--output", "-o", help="SavedModel directory to write (local or gs://)")
    p.add_argument("--onnx", action="store_true",
                   help="write MODEL/model.onnx (the graph vsep separate runs with onnxruntime, made from the "
                        "model's current weights); with --output, the SavedModel too")
    p.add_argument("--int8", action="store_true",
                   help="with --onnx: also MODEL/model.int8.onnx, the U-Net's convolutions in 8 bits "
                        "(calibrated on --calibration; preferred by vsep separate where current)")
    p.add_argument("--calibration", nargs="+", metavar="PATH",
                   help="recordings (files or folders) like the ones to separate, for --int8's activation ranges")
    p.add_argument("--save-defaults", action="store_true",
                   help="store the separation options given (over the model's current defaults) as the model's "
                        "own defaults, MODEL/separate.json: vsep separate, evaluate, export and vsep.Separator "
                        "then use them unless told otherwise (choose them on validation data)")
    add_arguments(p, SeparateConfig)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vsep.model_io import ModelDirError
    from vsep.storage import StorageError, preflight

    if not args.output and not args.onnx and not args.save_defaults:
        p.error("give --output (a SavedModel), --onnx (MODEL/model.onnx), --save-defaults, or several")
    try:
        from vsep import model_io

        scfg = from_namespace(SeparateConfig, args, model_io.separate_defaults(args.model))
        preflight(args.output, args.model)
        if args.int8 and not (args.onnx and args.calibration):
            raise ValueError("--int8 needs --onnx and --calibration recordings")
        if args.onnx:
            print(export_onnx(args.model))
        if args.int8:
            from vsep import model_io, onnx_int8

            print(onnx_int8.write(str(args.model or model_io.BUNDLED), args.calibration))
        if args.save_defaults:
            scfg.validate()
            print(model_io.write_separate_defaults(str(args.model or model_io.BUNDLED), scfg))
        if args.output:
            print(export(args.model, args.output, scfg))  # validates scfg
    except (ValueError, ModelDirError, StorageError) as e:
        print(f"vsep export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
