"""Pack the training part of CIFAR-10 (the 45,000 images the trainer keeps, its 5,000
held-out validation images left out) as the JPEG files' bytes in one ``.npz``, small enough
to travel to a GPU machine: ``jpeg`` (uint8 bytes, all files end to end), ``offsets``
``(N + 1,)`` int64, ``labels`` ``(N,)`` int64, ``indices`` ``(N,)`` (positions in
``data.list_images`` order).

    python training/pack_objects.py ../shared/datasets/cifar10-jpeg training/objects.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from sensitivity.model import data
from sensitivity.model.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("out")
    args = parser.parse_args()
    paths, labels = data.list_images(data.split_dir(args.data_dir, "train"))
    (indices, kept), _ = data.train_val_split(
        np.arange(len(paths)), labels, TrainConfig.val_size, TrainConfig.seed
    )
    blobs = [paths[i].read_bytes() for i in indices]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    jpeg = np.frombuffer(b"".join(blobs), np.uint8)
    np.savez(args.out, jpeg=jpeg, offsets=offsets, labels=kept, indices=indices)
    print(f"{len(blobs)} images, {jpeg.size / 1e6:.1f} MB -> {args.out}")


if __name__ == "__main__":
    main()
