"""Gradient times the pixel value (0..255): a first-order contribution against black."""

from sensitivity.methods.base import Job, Runner, gradient_pass


def run(job: Job) -> dict:
    """The gradient pass, its gradients times the images."""
    result = gradient_pass(job)
    result["values"] = result["values"] * job.images
    return result


RUNNER = Runner(run, one_pass=True, finds_class=True)
