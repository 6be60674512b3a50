"""Names that frameworks call, not our code: vulture's whitelist for tests/test_dead_code.py.

Vulture reads this file as more source; the expressions below count as uses. It is never
imported.
"""
# ruff: noqa: B018, F821

_.__getattr__  # module-level lazy import hook (sensitivity/__init__.py)
_.__dir__  # its companion for dir(sensitivity)
_.compute_output_shape  # Keras layer hook
_.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit, set on the module
_.writeable  # NumPy array flag, set to freeze arrays
_.on_epoch_begin  # Keras callback hooks
_.on_epoch_end
_finish_warm_ups  # registered with atexit
