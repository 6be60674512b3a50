"""A model's position head: which class lies at each position of its last feature map.

A model trained on whole 32x32 images (the shipped WRN-16-3) classifies the *average* of its
last feature map, so its dense head applied to one position says little about what lies there.
A position head is a small classifier of each position of that feature map, fitted with the
model frozen (its weights and predictions do not change) on photo-like scenes of objects from
the training part of the training split (:func:`fit_position_head`): a position's target is
the class of the object whose box holds the position's centre, "none" elsewhere. It reads the
position's features, their means over square neighbourhoods of a few sides around it
(:data:`NEIGHBOURHOODS`) and their mean over the whole map (:func:`position_inputs`), through
one hidden ReLU layer to a softmax over the classes and "none" (the classes compete at each
position: on the validation scenes of session 32 this pointed at the asked object 0.948 of the
time and told two objects apart 0.884, against 0.906 and 0.853 with an independent sigmoid per
class).

It is stored beside the model as ``NAME.positions.npz`` (plain arrays, read without pickles),
named with its sha256 in the card's ``position_head``; :func:`sensitivity.model.io.load_model`
attaches it (:func:`position_head_of`). CAM's per-position probability
(``cam``, option ``probability``) and :func:`sensitivity.imaging.objects.class_evidence` read
it in place of the dense head.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_SUFFIX = ".positions.npz"
"""A model's position head is stored in ``NAME.positions.npz`` beside ``NAME.keras``."""

NEIGHBOURHOODS = (3, 7)
"""Sides (feature-map positions) of the neighbourhoods whose means a head fitted now reads
(:func:`position_inputs`). Chosen on 150 validation scenes at side 144 (``benchmarks/README.md``,
session 34): with the 7x7 mean, two fits' cubed probability pointed at the asked object 0.912
and 0.922 of the time and told two objects apart 0.923 and 0.919; three fits with the 3x3 mean
alone pointed 0.919, 0.883 and 0.899 and told objects apart 0.915, 0.884 and 0.880. Means over
5x5 and 9x9, or 7x7 and 15x15, did as well; a wider hidden layer did not help. Head files
stored before session 34 read the 3x3 mean alone (:data:`FORMER_NEIGHBOURHOODS`)."""

FORMER_NEIGHBOURHOODS = (3,)
"""The neighbourhoods of a head stored without its ``neighbourhoods`` (before session 34)."""

TRAINING_KINDS = {
    "benchmark (24-64 px on 96-192)": {},
    "one object of 48-112 px on 112-160": {"canvas": (112, 160), "object_size": (48, 112),
                                           "num_objects": 1},
    "one object of 56-72 px filling most of 72-96": {"canvas": (72, 96),
                                                     "object_size": (56, 72), "num_objects": 1},
    "16-64 px on 128-256": {"canvas": (128, 256), "object_size": (16, 64)},
}
"""The scenes a head is fitted on, in turn (:func:`sensitivity.metrics.scenes.photo_like_scene`
arguments): the benchmark's kind, one large object, one filling most of the picture (a photo
of one thing, as the page sees it at the native size), many small ones."""

TRAINING_SIDES = (32, 48, 64, 96, 128, 160)
"""Each training scene is resized to one of these longer sides (pixels), in turn: from the
native size, where the page starts, to the sides ``find_objects`` reads."""

_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PositionHead:
    """``hidden_kernel`` ``(P C, H)``, ``hidden_bias`` ``(H,)``, ``kernel`` ``(H, K + 1)`` and
    ``bias`` ``(K + 1,)`` (float32, the last output "none") on the :func:`position_inputs` of a
    ``C``-channel feature map with ``neighbourhoods`` (``P`` = their number + 2);
    ``fitted_on``: how it was fitted (for the card)."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray
    neighbourhoods: tuple[int, ...] = NEIGHBOURHOODS
    fitted_on: str = ""

    def __post_init__(self) -> None:
        """ValueError unless the neighbourhoods are odd positive sides and the arrays' shapes
        fit them and each other."""
        sides = self.neighbourhoods
        if not all(isinstance(side, int) and not isinstance(side, bool) and side > 0
                   and side % 2 == 1 for side in sides):
            raise ValueError(f"has neighbourhoods {list(sides)}: expected odd positive sides")
        hidden = self.hidden_kernel.shape[-1]
        if not (self.hidden_kernel.ndim == 2
                and self.hidden_kernel.shape[0] % input_parts(sides) == 0
                and self.hidden_bias.shape == (hidden,) and self.kernel.ndim == 2
                and self.kernel.shape[0] == hidden and self.bias.shape == (self.kernel.shape[1],)):
            raise ValueError(f"has arrays of shapes that do not fit (neighbourhoods "
                             f"{list(sides)}): " + ", ".join(
                                 f"{name} {getattr(self, name).shape}" for name in
                                 ("hidden_kernel", "hidden_bias", "kernel", "bias")))

    @property
    def channels(self) -> int:
        """The feature map's channels ``C``."""
        return self.hidden_kernel.shape[0] // input_parts(self.neighbourhoods)

    @property
    def classes(self) -> int:
        """The classes ``K`` (without "none")."""
        return self.kernel.shape[1] - 1

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, h, w, K + 1)`` float64 logits of each position of ``(N, h, w, C)`` features,
        the last one "none"."""
        with one_blas_thread():
            inputs = position_inputs(features, self.neighbourhoods)
            hidden = np.maximum(inputs @ self.hidden_kernel + self.hidden_bias, 0)
            return (hidden @ self.kernel + self.bias).astype(np.float64)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(N, h, w, K)`` float64: each class's probability at each position (the softmax
        of :meth:`logits` without "none"'s)."""
        from scipy.special import softmax

        return softmax(self.logits(features), axis=-1)[..., :-1]


@functools.cache
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which NumPy's BLAS runs on one thread (threadpoolctl; the limit before is
    restored after). After a call on several threads, OpenBLAS's idle threads spin for a while
    and take the CPU from TensorFlow's next pass: on the 2-core CPU the position head's
    target's gradient right after the head's MLP at 144 px took 117 ms instead of 64 ms
    (``benchmarks/README.md``, session 36). The MLP itself gains little from more threads."""
    return _blas_threads().limit(limits=1, user_api="blas")


def input_parts(neighbourhoods: Sequence[int]) -> int:
    """How many ``C``-channel parts :func:`position_inputs` concatenates."""
    return len(neighbourhoods) + 2


def position_inputs(features: np.ndarray,
                    neighbourhoods: Sequence[int] = NEIGHBOURHOODS) -> np.ndarray:
    """``(N, h, w, P C)`` float32: each position's ``(N, h, w, C)`` features, their mean over
    its s x s neighbourhood for each side s of ``neighbourhoods`` (the border repeated
    outwards) and their mean over the whole map (``P`` = :func:`input_parts`)."""
    from scipy import ndimage

    features = np.asarray(features, np.float32)
    if features.ndim != 4:
        raise ValueError(f"a position head reads (N, h, w, C) features, got shape "
                         f"{features.shape}")
    local = [ndimage.uniform_filter(features, size=(1, side, side, 1), mode="nearest")
             for side in neighbourhoods]
    whole = np.broadcast_to(features.mean(axis=(1, 2), keepdims=True), features.shape)
    return np.concatenate([features, *local, whole], axis=-1)


def attach_position_head(model, head: PositionHead | None) -> None:
    """Make ``head`` the one :func:`position_head_of` gives for ``model`` (None: forget)."""
    if head is None:
        _HEADS.pop(model, None)
    else:
        _HEADS[model] = head


def position_head_of(model) -> PositionHead | None:
    """The position head attached to ``model``, or None."""
    return _HEADS.get(model)


def head_path(model_path: str | os.PathLike) -> Path:
    """Where the position head of a model file lives: ``NAME.positions.npz``."""
    path = Path(model_path)
    return path.with_name(path.stem + HEAD_SUFFIX)


def save_position_head(head: PositionHead, path: str | os.PathLike) -> None:
    """Write ``head``'s arrays and neighbourhoods to an ``.npz`` (no pickles)."""
    np.savez(path, hidden_kernel=head.hidden_kernel, hidden_bias=head.hidden_bias,
             kernel=head.kernel, bias=head.bias,
             neighbourhoods=np.asarray(head.neighbourhoods, np.int64))


def load_position_head(path: str | os.PathLike, fitted_on: str = "") -> PositionHead:
    """The head saved by :func:`save_position_head` (read without pickles; a file without
    ``neighbourhoods`` reads :data:`FORMER_NEIGHBOURHOODS`); ValueError when its arrays are
    missing, or :class:`PositionHead` refuses them (neighbourhoods that are not odd sides,
    shapes that do not fit together)."""
    with np.load(path, allow_pickle=False) as stored:
        try:
            arrays = {key: np.asarray(stored[key], np.float32) for key in
                      ("hidden_kernel", "hidden_bias", "kernel", "bias")}
        except KeyError as exc:
            raise ValueError(f"the position head {path} lacks {exc}") from None
        sides = (np.atleast_1d(stored["neighbourhoods"]) if "neighbourhoods" in stored
                 else np.asarray(FORMER_NEIGHBOURHOODS))
    try:
        return PositionHead(**arrays, neighbourhoods=tuple(sides.tolist()), fitted_on=fitted_on)
    except ValueError as exc:
        raise ValueError(f"the position head {path} {exc}") from None


def position_targets(shape: tuple[int, int], scale: tuple[float, float],
                     boxes: Sequence, labels: Sequence[int]) -> np.ndarray:
    """``(h, w)`` int64: the label of the box holding each position's centre, -1 for none.
    ``shape``: the feature map's ``(h, w)``; ``scale``: the scene's pixels per position
    ``(rows, columns)``; ``boxes`` ``(x0, y0, x1, y1)`` in scene pixels (exclusive ends)."""
    rows = (np.arange(shape[0]) + 0.5) * scale[0]
    columns = (np.arange(shape[1]) + 0.5) * scale[1]
    targets = np.full(shape, -1, np.int64)
    for box, label in zip(boxes, labels, strict=True):
        x0, y0, x1, y1 = tuple(box)[:4]
        inside = ((rows[:, None] >= y0) & (rows[:, None] < y1)
                  & (columns[None] >= x0) & (columns[None] < x1))
        targets[inside] = label
    return targets


def scene_positions(model, layer: str, scenes: Sequence, sides: Sequence[int], *,
                    neighbourhoods: Sequence[int] = NEIGHBOURHOODS,
                    background_kept: float = 1.0, seed: int = 0, dtype=np.float32,
                    progress: Callable[[float], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(``(M, P C)`` :func:`position_inputs` (with ``neighbourhoods``) of ``dtype``, ``(M,)`` int64
    :func:`position_targets`) of the positions of ``layer``'s feature map over ``scenes``, scene
    ``i`` resized to the longer side ``sides[i % len(sides)]``: every position of an object, and
    each position of none with probability ``background_kept`` (``seed``: which)."""
    from sensitivity.engine.gradients import feature_forward
    from sensitivity.imaging.images import resize_to_side

    rng = np.random.default_rng(seed)
    inputs, targets = [], []
    for i, scene in enumerate(scenes):
        x = resize_to_side(scene.image, sides[i % len(sides)])
        features, _ = feature_forward(model, layer, x[None].astype(np.float32))
        h, w = features.shape[1:3]
        scale = (scene.image.shape[0] / h, scene.image.shape[1] / w)
        target = position_targets((h, w), scale, scene.boxes, scene.labels).reshape(-1)
        kept = (target >= 0) | (rng.random(target.size) < background_kept)
        position = position_inputs(features, neighbourhoods)[0].reshape(h * w, -1)
        inputs.append(position[kept].astype(dtype))
        targets.append(target[kept])
        if progress is not None:
            progress((i + 1) / len(scenes))
    return _stacked(inputs), np.concatenate(targets)


def _stacked(chunks: list[np.ndarray]) -> np.ndarray:
    """The ``(m_i, D)`` ``chunks`` (at least one) stacked into one ``(sum m_i, D)`` array, each
    freed once copied (the positions of thousands of scenes take gigabytes: never hold them
    twice)."""
    out = np.empty((sum(len(c) for c in chunks), chunks[0].shape[1]), chunks[0].dtype)
    start = 0
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        out[start:start + len(chunk)] = chunk
        start += len(chunk)
    return out


def train_head(inputs: np.ndarray, targets: np.ndarray, num_classes: int, *,
               neighbourhoods: Sequence[int] = NEIGHBOURHOODS, hidden: int = 256,
               epochs: int = 6, batch_size: int = 4096, background_weight: float = 1.0,
               seed: int = 0, verbose: int = 0) -> PositionHead:
    """Fit a :class:`PositionHead` (Keras, Adam, cross-entropy of a softmax over the
    ``num_classes`` classes and "none", dropout 0.2 on the hidden layer) to ``(M, P C)``
    ``inputs`` (:func:`position_inputs` with ``neighbourhoods``; float16 or float32, computed in
    float32) and ``(M,)`` ``targets`` (a class, or -1 for none), positions of none weighted by
    ``background_weight``. The batches are read from ``inputs`` in a new random order each
    epoch (:func:`_batches`), never copied whole."""
    import keras

    if inputs.shape[1] % input_parts(neighbourhoods):
        raise ValueError(f"{inputs.shape[1]} input columns are not {input_parts(neighbourhoods)} "
                         f"parts of equal width (neighbourhoods {list(neighbourhoods)})")

    keras.utils.set_random_seed(seed)
    targets = np.asarray(targets)
    first = keras.layers.Dense(hidden, activation="relu")
    last = keras.layers.Dense(num_classes + 1, activation="softmax")
    source = keras.Input((inputs.shape[1],))
    net = keras.Model(source, last(keras.layers.Dropout(0.2)(first(source))))
    net.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    net.fit(_batches(inputs, targets, num_classes, batch_size, background_weight, seed),
            epochs=epochs, verbose=verbose)
    return PositionHead(*(np.asarray(v, np.float32) for v in
                          (first.kernel, first.bias, last.kernel, last.bias)),
                        neighbourhoods=tuple(neighbourhoods))


def _batches(inputs: np.ndarray, targets: np.ndarray, num_classes: int, batch_size: int,
             background_weight: float, seed: int):
    """A ``keras.utils.PyDataset`` of ``(inputs float32, labels, weights)`` batches of
    :func:`train_head`: the rows of each batch gathered from ``inputs`` (a fit's inputs take
    gigabytes: Keras would copy them whole, twice), in a new order each epoch; "none" is
    label ``num_classes``."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(targets))

        def __len__(self) -> int:
            return -(-len(targets) // batch_size)

        def __getitem__(self, index: int):
            rows = np.sort(self.order[index * batch_size:(index + 1) * batch_size])
            chosen = targets[rows]
            return (np.asarray(inputs[rows], np.float32),
                    np.where(chosen >= 0, chosen, num_classes),
                    np.where(chosen >= 0, 1.0, background_weight).astype(np.float32))

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(targets))

    return Batches()


BACKGROUND_KEPT = 0.4
"""Share of the positions of no object a head is fitted on (they are weighted by its inverse):
most positions show background, and all of them do not fit in 24 GB."""


def fit_position_head(model, data_dir: str | os.PathLike, *,
                      photos_dir: str | os.PathLike | None = None, scenes: int = 4500,
                      seed: int = 0, epochs: int = 6, hidden: int = 256,
                      neighbourhoods: Sequence[int] = NEIGHBOURHOODS,
                      progress: Callable[[float], None] | None = None) -> PositionHead:
    """Fit ``model``'s position head on ``scenes`` photo-like scenes of :data:`TRAINING_KINDS`
    in turn, objects from the training part of the training split
    (:func:`sensitivity.metrics.scenes.scene_pool` ``"train"``), each at one of
    :data:`TRAINING_SIDES`, on the feature map CAM reads
    (:func:`sensitivity.methods.localising.cam_head`), reading the means over ``neighbourhoods``
    (:func:`position_inputs`). Minutes on a 2-core CPU."""
    from sensitivity.methods.localising import cam_head
    from sensitivity.metrics.scenes import kind_scenes

    layer, kernel, _ = cam_head(model)
    kinds = TRAINING_KINDS
    per_kind = -(-scenes // len(kinds))  # scenes of each kind, rounded up
    made = kind_scenes("train", kinds, per_kind, data_dir=data_dir, photos_dir=photos_dir,
                       seed=seed, stream=0)
    # kind_scenes lists each kind's scenes together: interleave them so that sides and kinds
    # vary independently.
    order = [k * per_kind + i for i in range(per_kind) for k in range(len(kinds))][:scenes]
    ordered = [made[i][1] for i in order]
    del made
    # float16: the positions of thousands of scenes take gigabytes (features after a ReLU, of
    # a few units: float16 keeps three digits).
    inputs, targets = scene_positions(model, layer, ordered, TRAINING_SIDES,
                                      neighbourhoods=neighbourhoods,
                                      background_kept=BACKGROUND_KEPT, seed=seed,
                                      dtype=np.float16, progress=progress)
    del ordered
    head = train_head(inputs, targets, kernel.shape[1], neighbourhoods=neighbourhoods,
                      hidden=hidden, epochs=epochs,
                      background_weight=1 / BACKGROUND_KEPT, seed=seed)
    described = (f"{len(order)} photo-like scenes (objects from the training part of the "
                 f"training split; kinds: {', '.join(kinds)}; longer sides "
                 f"{', '.join(map(str, TRAINING_SIDES))} in turn; seed {seed}), "
                 f"{int((targets >= 0).sum())} object positions of {layer} and "
                 f"{int((targets < 0).sum())} of none (each kept with probability "
                 f"{BACKGROUND_KEPT}), neighbourhood means "
                 f"{', '.join(f'{s}x{s}' for s in neighbourhoods)}, hidden {hidden}, "
                 f"{epochs} epochs")
    return dataclasses.replace(head, fitted_on=described)


def write_position_head(model_path: str | os.PathLike, head: PositionHead) -> dict:
    """Store ``head`` beside the model at ``model_path`` (:func:`head_path`) and name it, with
    its sha256 and how it was fitted, in the card's ``position_head``. Returns the card."""
    from sensitivity.model.io import read_model_card, sha256_of, write_model_card

    path = head_path(model_path)
    save_position_head(head, path)
    card = read_model_card(model_path)
    card["position_head"] = {"file": path.name, "sha256": sha256_of(path),
                             "fitted_on": head.fitted_on}
    return write_model_card(model_path, card)


def run(args) -> int:
    """``python -m sensitivity fit-positions``: fit the position head of ``args.model`` (else
    the operator's model) and store it with the model; returns 0."""
    import sys
    import time

    from sensitivity.model.io import load_model_alone, model_path

    path = Path(args.model) if args.model else model_path()
    model = load_model_alone(path)  # an old head is about to be replaced
    start = time.perf_counter()
    shown = [-1]  # the last tenth of the scenes reported

    def report(fraction: float) -> None:
        if int(10 * fraction) > shown[0]:
            shown[0] = int(10 * fraction)
            print(f"  scenes read: {10 * shown[0]}%", file=sys.stderr, flush=True)

    head = fit_position_head(model, args.data_dir, photos_dir=args.photos_dir,
                             scenes=args.scenes, seed=args.seed, epochs=args.epochs,
                             progress=report)
    write_position_head(path, head)
    print(f"fitted in {time.perf_counter() - start:.0f} s on {head.fitted_on}")
    print(f"written: {path.with_suffix('.json')} and {head_path(path)}")
    return 0
