"""vsep's hyperparameter search (``vsep tune``) on keras-tuner.

- :mod:`tuner.space`: the search space and tuner settings as frozen dataclasses, and which
  combinations are valid (no TensorFlow needed);
- :mod:`tuner.hypermodel`: the keras-tuner ``HyperModel`` that builds and trains a draw;
- :mod:`tuner.tuners`: Hyperband / RandomSearch / BayesianOptimization with run records and
  ``gs://`` sync;
- :mod:`tuner.report`: trials table, best config, frozen space;
- :mod:`tuner.search`: the ``vsep tune`` command (``main(argv) -> int``).
"""
