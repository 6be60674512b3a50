"""The vanilla gradient of the target score with respect to each pixel value."""

from sensitivity.methods.base import Runner, gradient_pass

RUNNER = Runner(gradient_pass, one_pass=True, finds_class=True)
