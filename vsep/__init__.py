"""vsep: pull one known speaker's voice out of real recordings (TensorFlow/Keras).

``vsep.Separator`` is the Python API (imported lazily, so ``import vsep`` is cheap).
"""

__version__ = "0.1.0"
__all__ = ["Separator", "__version__"]


def __getattr__(name: str):
    if name == "Separator":
        from vsep.api import Separator

        return Separator
    raise AttributeError(f"module 'vsep' has no attribute {name!r}")
