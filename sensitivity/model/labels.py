"""The CIFAR-10 label set."""

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten CIFAR-10 class names, in label order (index 0..9)."""

NUM_CLASSES = len(CLASS_NAMES)
