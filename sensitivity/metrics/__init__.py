"""Objective measures of saliency maps: deletion and insertion curves and the counterfactual
check (`perturbation`, with its `fills`), localisation (`localisation`), the randomisation
check (`sanity`), the controls they are compared with (`controls`), the checks on their inputs
(`inputs`), and the benchmarks that run them on photo-like scenes (`scenes`,
`localisation_benchmark`, `maps_benchmark`)."""
