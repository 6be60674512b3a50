"""Guided backpropagation: the gradient passed through ReLUs only where both their input and
the incoming gradient are positive (fails the model-randomisation sanity check)."""

from sensitivity.methods.base import Job, Runner, gradient_pass


def run(job: Job) -> dict:
    """The gradient pass through guided ReLUs (they change the backward pass only)."""
    return gradient_pass(job, guided=True)


RUNNER = Runner(run, one_pass=True, finds_class=True)
