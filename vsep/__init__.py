"""vsep: pull one known speaker's voice out of real recordings (TensorFlow/Keras)."""

__version__ = "0.1.0"
