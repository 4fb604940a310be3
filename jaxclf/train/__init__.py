"""Train state and pure steps, the run compiled from a config, the loop that drives it, and
its mesh, checkpoints, optimizers and writers. (``jaxclf.run.train_and_evaluate`` trains a
config and writes its results.)"""

from jaxclf.train.steps import TrainState, eval_step, init_state, make_steps, train_step

__all__ = ["TrainState", "eval_step", "init_state", "make_steps", "train_step"]
