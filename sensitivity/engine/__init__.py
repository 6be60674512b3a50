"""The engine: compiled gradients and forward passes (`gradients`), predictions (`inference`), the
method and option registry (`choices`), maps from attributions (`saliency`) and the cost of a
request (`budget`)."""
