"""The curriculum of horizons of L2O-enhanced (Chen et al. 2020; spec model_free §4.1).

Stages train on horizons ``(100, 200, 500, 1000, 1500, 2000, 2500, 3000)`` steps; the
evaluation horizon of stage i is the horizon of stage i+1 (clamped at the last stage, where
the original crashes with an IndexError and never trains the 3000-step stage).  At every
evaluation ``num_eval`` grows; an improvement marks the stage as improved; from the third
evaluation on (``min_num_eval``) the first non-improving evaluation advances to the next
stage (restoring the stage's best weights) if the stage improved at least once, else ends
training.  In the last stage a non-improving evaluation ends training.
"""
HORIZONS = (100, 200, 500, 1000, 1500, 2000, 2500, 3000)


class Curriculum:

    def __init__(self, horizons=HORIZONS, min_num_eval=3):
        self.horizons = tuple(int(h) for h in horizons)
        self.min_num_eval = int(min_num_eval)
        self.stage, self.num_eval, self.improved, self.finished = 0, 0, False, False

    @property
    def horizon(self):
        return self.horizons[self.stage]

    @property
    def eval_horizon(self):
        return self.horizons[min(self.stage + 1, len(self.horizons) - 1)]

    def on_evaluation(self, score, improved):
        """Returns ``"improved"``, ``"continue"``, ``"advance"`` or ``"stop"``."""
        del score
        self.num_eval += 1
        if improved:
            self.improved = True
            return "improved"
        if self.num_eval < self.min_num_eval:
            return "continue"
        if self.improved and self.stage < len(self.horizons) - 1:
            self.stage += 1
            self.num_eval, self.improved = 0, False
            return "advance"
        self.finished = True
        return "stop"

    def state(self):
        return {"stage": self.stage, "num_eval": self.num_eval, "improved": self.improved,
                "finished": self.finished}

    def load_state(self, state):
        self.stage, self.num_eval = state["stage"], state["num_eval"]
        self.improved, self.finished = state["improved"], state["finished"]
