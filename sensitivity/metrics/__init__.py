"""Objective measures of saliency maps: deletion and insertion curves, localisation, the
counterfactual and randomisation checks, the controls they are compared with, and the
benchmarks that run them on photo-like scenes (`scenes`)."""
