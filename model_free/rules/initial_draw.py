"""The options that choose a learned optimizer's initial draw (``--lstm_init=tied``), kept
apart from :mod:`model_free.rules.base` so modules that only name them (the episodic
checkpoints, the meta-training entry) do not import the Keras classes while the registry
imports them."""

# constructor options that choose only an optimizer's initial draw (its former tied draw,
# --lstm_init=tied: model_free.meta.training.lstm_init_options): the LSTMs' (L2O-DM, L2O-RNNprop,
# L2O-enhanced, L2O-Swarm), L2O-Swarm's attention weights, L2O-Scale's initial states and
# readouts.  A run resumed from a checkpoint takes its weights from it, so they do not make
# a checkpoint another configuration's.
INITIAL_DRAW_OPTIONS = ("tied_lstm_init", "tied_attention_init", "tied_init")


def initializers(make, tied):
    """A maker of the initializers of weights drawn alike: ``make()`` anew for every weight,
    so each is its own draw, as the original's (TF1 gives every random op its own seed);
    with ``tied`` one ``make()`` (made now) for all, the former draw: an unseeded Keras 3
    initializer fixes its seed when it is made, so every weight it builds with the same
    shape gets the same values (a longer one: those values first)."""
    if tied:
        shared = make()
        return lambda: shared
    return make
