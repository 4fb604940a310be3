"""Train state, pure steps, losses, optimizers, mesh, checkpoints and the loop."""

from jaxclf.train.loop import build_model, train_and_evaluate
from jaxclf.train.steps import TrainState, eval_step, init_state, make_steps, train_step

__all__ = ["TrainState", "build_model", "eval_step", "init_state", "make_steps", "train_and_evaluate", "train_step"]
