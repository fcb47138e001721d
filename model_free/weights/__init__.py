"""Trained rules in files: our ``.npz`` weights and the original Open-L2O releases.

* :mod:`.pretrained`: save and load a learned optimizer (its registered name and weights;
  the catalogue's entries by name) and read the original's L2O-DM / L2O-RNNprop pickles;
* :mod:`.safe_pickle`: the reader of those pickles that never unpickles;
* :mod:`.scale_original`: the original L2O-Scale's TensorFlow 1 checkpoints.

Towards the other folders: a file names its rule by registered name (never by module), so
the rules are built through the registry; :mod:`model_free.meta` saves its best and last
weights here and the command lines load them (``--load``).
"""
