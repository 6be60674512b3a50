"""Training a WRN on CIFAR-10: augmentation, a one-cycle schedule, checkpoints and resume.

The recipe: random crops of 32x32 from the image padded by 4 pixels (reflection) and
horizontal flips, optionally Cutout (a random square per image filled with the batch's mean
colour; DeVries and Taylor, 2017); SGD with Nesterov momentum 0.9; learning rate warmed up
linearly to its peak over the first 15% of the steps, then a cosine decay to zero (one
cycle); label smoothing; an L2 penalty on the weights; optionally teacher models (one, or an
ensemble) whose probabilities soften the targets (knowledge distillation). A class-balanced
validation part is held out of the training split; the test split is touched once, at the end,
to measure the final model.

After every epoch the model with its optimizer state goes to ``<checkpoint-dir>/last.keras``
and the progress to ``state.json`` beside it, so ``--resume`` continues an interrupted run
exactly where it stopped (the schedule is a function of the optimizer's step count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensitivity.model import data as data_mod
from sensitivity.model.labels import CLASS_NAMES, NUM_CLASSES


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with each checkpoint)."""

    depth: int = 16
    width: int = 2
    epochs: int = 30
    batch_size: int = 128
    peak_lr: float = 0.2
    warmup_fraction: float = 0.15
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    val_size: int = 5000
    low_res_epochs: int = 0
    low_res_size: int = 24
    cutout: int = 0  # side in pixels of the square Cutout fills (0: off)
    seed: int = 0
    data_dir: str | None = None
    init_from: str | None = None  # a .keras model of the same architecture to start from
    # .keras models whose (ensembled) predictions soften the targets; none: no distillation
    teachers: list[str] = dataclasses.field(default_factory=list)
    teacher_weight: float = 0.5  # share of the teachers' probabilities in each target


def one_hot(labels: np.ndarray) -> np.ndarray:
    """``(N,)`` int labels to ``(N, 10)`` float32 one-hot rows."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def teacher_probabilities(teachers: list, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The class probabilities of a list of teacher models (one, or an ensemble) for
    ``(N, H, W, 3)`` images (pixel values 0..255).

    The logits of every teacher for each image and for its mirror image are averaged before the
    softmax, so the targets do not depend on which way round an image was flipped. Returns
    ``(N, 10)`` float32.
    """
    from sensitivity.engine.inference import softmax

    pixels = images.astype(np.float32)
    logits = 0.0
    for teacher in teachers:
        logits = logits + teacher.predict(pixels, batch_size=batch_size, verbose=0)
        logits = logits + teacher.predict(pixels[:, :, ::-1], batch_size=batch_size, verbose=0)
    return softmax(logits / (2.0 * len(teachers)))


def training_targets(
    labels: np.ndarray, teacher_probs: np.ndarray | None, teacher_weight: float
) -> np.ndarray:
    """``(N, 10)`` float32 targets: one-hot labels, or with a teacher (knowledge distillation,
    Hinton et al., 2015) ``(1 - teacher_weight) * one-hot + teacher_weight * teacher_probs``."""
    targets = one_hot(labels)
    if teacher_probs is None:
        return targets
    return ((1.0 - teacher_weight) * targets + teacher_weight * teacher_probs).astype(np.float32)


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, pad: int = 4, cutout: int = 0
) -> np.ndarray:
    """Random ``pad``-pixel-shift crops (reflection padding) and horizontal flips; with
    ``cutout`` > 0, then a ``cutout`` x ``cutout`` square per image, centred anywhere in it and
    clipped at its border, filled with the batch's mean colour (Cutout).

    ``images``: ``(N, H, W, 3)`` uint8; returns float32 of the same shape, values 0..255.
    """
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    flip = rng.random(n) < 0.5
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = out.astype(np.float32)
    if cutout > 0:
        cy = rng.integers(0, height, size=n)[:, None]
        cx = rng.integers(0, width, size=n)[:, None]
        ys, xs = np.arange(height)[None, :], np.arange(width)[None, :]
        inside_y = (ys >= cy - cutout // 2) & (ys < cy - cutout // 2 + cutout)
        inside_x = (xs >= cx - cutout // 2) & (xs < cx - cutout // 2 + cutout)
        square = inside_y[:, :, None] & inside_x[:, None, :]
        out[square] = out.mean(axis=(0, 1, 2))
    return out


def area_matrix(size_out: int, size_in: int) -> np.ndarray:
    """``(size_out, size_in)`` weights that average each output pixel's footprint (box filter)."""
    edges = np.linspace(0.0, size_in, size_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    left = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(hi, left + 1) - np.maximum(lo, left), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def downscale_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Area-downscale ``(N, H, W, 3)`` float32 images to ``(N, size, size, 3)``."""
    rows = area_matrix(size, images.shape[1])
    cols = area_matrix(size, images.shape[2])
    return np.einsum("ih,nhwc,jw->nijc", rows, images, cols, optimize=True)


def _batches(images, targets, config: TrainConfig, first_epoch: int, size: int | None = None):
    import keras

    class AugmentedBatches(keras.utils.PyDataset):
        """Shuffled, augmented batches; epoch ``e`` draws from a generator seeded by ``e``."""

        def __init__(self):
            super().__init__()
            self.epoch = first_epoch
            self._reshuffle()

        def _reshuffle(self):
            self.rng = np.random.default_rng([config.seed, self.epoch])
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return math.ceil(len(images) / config.batch_size)

        def __getitem__(self, index):
            idx = self.order[index * config.batch_size : (index + 1) * config.batch_size]
            rng = np.random.default_rng([config.seed, self.epoch, index])
            batch = augment_batch(images[idx], rng, cutout=config.cutout)
            if size is not None:
                batch = downscale_batch(batch, size)
            return batch, targets[idx]

        def on_epoch_end(self):
            self.epoch += 1
            self._reshuffle()

    return AugmentedBatches()


def compile_for_training(model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Attach the optimizer, schedule, loss and metric of ``config`` to ``model``."""
    import keras

    total = config.epochs * steps_per_epoch
    warmup = max(1, int(config.warmup_fraction * total))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.peak_lr / 10,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=config.peak_lr,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )


def reschedule(model, steps_per_epoch: int, epochs: int) -> None:
    """Make a resumed run end after ``epochs`` epochs in all, keeping the current rate.

    From the optimizer's current step, the learning rate decays by a cosine from its present
    value to zero at the new last step (a built-in schedule, so checkpoints stay loadable in
    safe mode).
    """
    import keras

    step = int(model.optimizer.iterations.numpy())
    remaining = epochs * steps_per_epoch - step
    if remaining < 1:
        raise ValueError(f"the run is already past {epochs} epochs")
    rate = float(np.asarray(model.optimizer.learning_rate))
    model.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=rate,
        decay_steps=remaining,
        alpha=0.0,
        warmup_target=rate,
        warmup_steps=max(step, 1),
    )


def machine_description() -> str:
    """CPU model, core count and OS of this machine, for model cards and benchmarks."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _load_training_data(config: TrainConfig):
    if config.data_dir:
        x, y = data_mod.load_split(config.data_dir, "train")
        try:
            test = data_mod.load_split(config.data_dir, "test")
        except data_mod.DataError:
            test = None
        source = f"class folders in {config.data_dir}"
    else:
        (x, y), test = data_mod.load_keras_cifar10()
        source = "keras.datasets.cifar10"
    return x, y, test, source


class _EpochLog:
    """Writes one line per epoch (and the checkpoint) after each epoch."""

    def __init__(self, checkpoint_dir: Path, config: TrainConfig, state: dict, log_file):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.started = time.time()

            def on_epoch_end(self, epoch, logs=None):
                outer.end_epoch(self.model, epoch, logs or {})

        self.callback = Callback()
        self.checkpoint_dir = checkpoint_dir
        self.config = config
        self.state = state
        self.log_file = log_file
        self.started = time.time()

    def end_epoch(self, model, epoch: int, logs: dict) -> None:
        seconds = time.time() - self.started
        self.state["epoch"] = epoch + 1
        self.state["train_seconds"] += seconds
        row = {k: float(v) for k, v in logs.items()}
        row.update(epoch=epoch + 1, seconds=round(seconds, 1))
        self.state["history"].append(row)
        checkpoint = self.checkpoint_dir / "last.keras"
        tmp = self.checkpoint_dir / "last.tmp.keras"
        model.save(tmp)
        os.replace(tmp, checkpoint)
        _write_json(self.checkpoint_dir / "state.json", self.state)
        mean_seconds = self.state["train_seconds"] / len(self.state["history"])
        left = (self.config.epochs - epoch - 1) * mean_seconds
        nan = float("nan")
        line = (
            f"epoch {epoch + 1}/{self.config.epochs} loss {row.get('loss', nan):.4f} "
            f"acc {row.get('accuracy', nan):.4f} val_acc {row.get('val_accuracy', nan):.4f} "
            f"{seconds:.0f}s eta {left / 60:.0f} min"
        )
        print(line, file=self.log_file, flush=True)


def _warm_start(model, path: str) -> dict:
    """Copy the weights of the model at ``path`` into ``model``; return what its card says.

    A warm restart (a new one-cycle schedule from trained weights, as in SGDR) lets a run that
    ended too early go on in a later sitting. The card of the earlier model gives the epochs and
    wall time it cost, so that the new card can report the whole cost.
    """
    from sensitivity.model.io import load_model, read_model_card

    earlier = load_model(path)  # refuses a file without a card that matches it
    if len(earlier.get_weights()) != len(model.get_weights()):
        raise ValueError(f"{path} is not a {model.name} of this depth and width")
    model.set_weights(earlier.get_weights())
    card = read_model_card(path)
    return {
        "path": str(path),
        "epochs": card.get("epochs", 0),
        "train_wall_time_minutes": card.get("train_wall_time_minutes", 0.0),
        "recipe": card.get("recipe"),
    }


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def _start_state(config: TrainConfig, checkpoint_dir: Path, resume: bool
                 ) -> tuple[TrainConfig, dict]:
    """The run's config and state: read back from ``checkpoint_dir`` when resuming, else new."""
    state_path = checkpoint_dir / "state.json"
    if not resume:
        return config, {
            "config": dataclasses.asdict(config), "epoch": 0, "train_seconds": 0.0, "history": [],
        }
    if not state_path.exists() or not (checkpoint_dir / "last.keras").exists():
        raise FileNotFoundError(f"nothing to resume in {checkpoint_dir}")
    state = json.loads(state_path.read_text())
    return TrainConfig(**state["config"]), state


def _teacher_targets(config: TrainConfig, state: dict, x_train: np.ndarray,
                     x_val: np.ndarray, y_val: np.ndarray) -> np.ndarray | None:
    """The teachers' probabilities ``(N, 10)`` of the training images (None without teachers),
    after checking that each teacher is the model the run began with; records their sha256 and
    validation accuracy in ``state``."""
    if not config.teachers:
        return None
    from sensitivity.model.io import ModelError, load_model, read_model_card

    # load_model checks each file against its card's sha256.
    teachers = [load_model(path) for path in config.teachers]
    teacher_sha256 = [read_model_card(path)["sha256"] for path in config.teachers]
    for path, now, then in zip(
        config.teachers, teacher_sha256, state.get("teacher_sha256", teacher_sha256), strict=True
    ):
        if now != then:
            raise ModelError(
                f"the teacher {path} is not the model this run began with (sha256 "
                f"{now[:12]}..., the run recorded {then[:12]}...): put that model back, "
                "or start a new run"
            )
    probabilities = teacher_probabilities(teachers, x_train)
    if len(x_val):
        val_probs = teacher_probabilities(teachers, x_val)
        state["teacher_validation_accuracy"] = float(np.mean(val_probs.argmax(1) == y_val))
    state["teacher_sha256"] = teacher_sha256
    return probabilities


def _model_to_train(config: TrainConfig, state: dict, checkpoint_dir: Path, resume: bool,
                    new_epochs: int | None, steps: int, x_train: np.ndarray, log_file
                    ) -> tuple[object, TrainConfig]:
    """The compiled model to fit and the (possibly lengthened) config: the checkpoint when
    resuming (rescheduled to ``new_epochs``), else a new WRN normalised by the training
    pixels' statistics (warm-started from ``config.init_from`` if set)."""
    import keras

    from sensitivity.model.wrn import build_wrn

    if resume:
        model = keras.saving.load_model(checkpoint_dir / "last.keras")
        if new_epochs is not None and new_epochs != config.epochs:
            reschedule(model, steps, new_epochs)
            config = dataclasses.replace(config, epochs=new_epochs)
            state["config"] = dataclasses.asdict(config)
            state.setdefault("rescheduled", []).append(
                {"after_epoch": state["epoch"], "epochs": new_epochs}
            )
        print(f"resuming after epoch {state['epoch']} of {config.epochs}", file=log_file,
              flush=True)
        return model, config
    pixels = x_train.reshape(-1, 3).astype(np.float64)
    state["mean"] = pixels.mean(axis=0).tolist()
    state["std"] = pixels.std(axis=0).tolist()
    model = build_wrn(
        config.depth,
        config.width,
        mean=state["mean"],
        std=state["std"],
        weight_decay=config.weight_decay / 2,  # L2(c) adds c*w^2: gradient 2c*w = wd*w
    )
    if config.init_from:
        state["init_from"] = _warm_start(model, config.init_from)
    compile_for_training(model, config, steps)
    return model, config


def _fit(model, config: TrainConfig, state: dict, x_train: np.ndarray, targets: np.ndarray,
         validation, logger: _EpochLog, stop_after: int | None, verbose: int) -> None:
    """Fit up to the run's last epoch (or ``stop_after`` epochs more), one fit per resolution
    (progressive resizing: Keras fixes a data set's shapes per fit)."""
    last = config.epochs if stop_after is None else min(config.epochs, state["epoch"] + stop_after)
    low_res_end = min(config.low_res_epochs, last)
    for size, end in ((config.low_res_size, low_res_end), (None, last)):
        if state["epoch"] < end:
            model.fit(
                _batches(x_train, targets, config, state["epoch"], size),
                epochs=end,
                initial_epoch=state["epoch"],
                validation_data=validation,
                callbacks=[logger.callback],
                verbose=verbose,
                shuffle=False,  # the batches shuffle themselves, by epoch (Keras would reorder
                # them with Python's global random state, which a resumed run does not restore)
            )


def build_card(config: TrainConfig, state: dict, model, name: str, source: str,
               counts: dict[str, int], report: dict | None) -> dict:
    """The model card of a finished run (without the file's sha256, which
    :func:`sensitivity.model.io.write_model_card` adds): architecture, classes, data
    ``counts`` (train / validation / test images), recipe, epochs and wall time (with a warm
    start's), machine, validation and test accuracy (``report``: :func:`accuracy_report`)."""
    import keras

    earlier = state.get("init_from") or {"epochs": 0, "train_wall_time_minutes": 0.0}
    card = {
        "name": name,
        "architecture": {
            "family": "wide residual network (Zagoruyko and Komodakis, 2016), pre-activation",
            "depth": config.depth,
            "width": config.width,
            "input": "(None, None, None, 3) float32 RGB pixel values 0..255, 32x32 native",
            "normalisation": {"mean": state["mean"], "std": state["std"]},
            "output": "10 logits from the layer 'logits'",
        },
        "parameters": int(model.count_params()),
        "classes": list(CLASS_NAMES),
        "input_size": 32,
        "input_range": [0, 255],
        "head": "logits",
        "data": {
            "source": source,
            "train_images": counts["train"],
            "validation_images": counts["validation"],
            "test_images": counts["test"],
        },
        "recipe": dataclasses.asdict(config) | _recipe_notes(config, state),
        "epochs": state["epoch"] + earlier["epochs"],
        "train_wall_time_minutes": round(
            state["train_seconds"] / 60 + earlier["train_wall_time_minutes"], 1
        ),
        "machine": machine_description(),
        "final_validation_accuracy": state["history"][-1].get("val_accuracy")
        if state["history"]
        else None,
        "test_accuracy": report["accuracy"] if report else None,
        "test_per_class_accuracy": report["per_class"] if report else None,
        "test_set": "CIFAR-10 test split as found in the data source" if report else None,
        "keras_version": keras.__version__,
    }
    if state.get("init_from"):
        card["warm_start"] = state["init_from"] | {
            "note": "this run started from the weights of an earlier run (a warm restart with a "
            "new one-cycle schedule); 'epochs' and 'train_wall_time_minutes' count both runs"
        }
    return card


def _recipe_notes(config: TrainConfig, state: dict) -> dict:
    """The recipe in words: optimiser, schedule, augmentation, loss, and the distillation."""
    notes = {
        "optimizer": "SGD, Nesterov momentum",
        "schedule": "linear warm-up from peak/10 to peak, then cosine decay to 0 (one cycle)",
        "augmentation": "random 32x32 crop of the 4-pixel reflection-padded image, "
        "horizontal flip"
        + (f", Cutout: a {config.cutout}x{config.cutout} square per image (clipped at the "
           "border) filled with the batch's mean colour" if config.cutout else ""),
        "progressive_resizing": "the first low_res_epochs epochs see the augmented images "
        "area-downscaled to low_res_size (the network is fully convolutional)",
        "loss": "categorical cross-entropy with label smoothing on the logits",
    }
    if not config.teachers:
        return notes
    return notes | {
        "distillation": "each target is (1 - teacher_weight) x the one-hot label + "
        "teacher_weight x the softmax of the teachers' logits averaged over the "
        "teachers and over the un-augmented training image and its mirror image",
        # A path alone would go stale: a shipped student usually replaces its teacher.
        "teachers": [
            f"{path} as it was at training time: the model whose weights file has the "
            f"sha256 {sha256}"
            for path, sha256 in zip(config.teachers, state["teacher_sha256"], strict=True)
        ],
        "teacher_sha256": state.get("teacher_sha256"),
        "teacher_validation_accuracy": state.get("teacher_validation_accuracy"),
    }


def train(
    config: TrainConfig,
    out: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    resume: bool = False,
    new_epochs: int | None = None,
    verbose: int = 1,
    log_file=None,
    stop_after: int | None = None,
) -> dict | None:
    """Train (or resume) a WRN as ``config`` says; write ``out`` (``.keras``) and its card.

    ``new_epochs`` (with ``resume``) changes the length of the run (see :func:`reschedule`).
    ``stop_after`` trains at most that many epochs in this call (the rest with ``resume``).
    Returns the model card (a dict, also written as ``out`` with suffix ``.json``), or None when
    the run stopped early and is left to be resumed.
    """
    import sys

    import keras

    from sensitivity.model.evaluate import accuracy_report
    from sensitivity.model.io import write_model_card
    from sensitivity.model.wrn import build_wrn

    log_file = log_file or sys.stdout
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config, state = _start_state(config, checkpoint_dir, resume)
    keras.utils.set_random_seed(config.seed)

    x, y, test, source = _load_training_data(config)
    (x_train, y_train), (x_val, y_val) = data_mod.train_val_split(
        x, y, config.val_size, config.seed
    )
    steps = math.ceil(len(x_train) / config.batch_size)
    teacher_probs = _teacher_targets(config, state, x_train, x_val, y_val)
    targets = training_targets(y_train, teacher_probs, config.teacher_weight)
    model, config = _model_to_train(config, state, checkpoint_dir, resume, new_epochs, steps,
                                    x_train, log_file)
    state["first_epoch"] = state["epoch"]
    logger = _EpochLog(checkpoint_dir, config, state, log_file)
    validation = (x_val.astype(np.float32), one_hot(y_val)) if len(x_val) else None
    _fit(model, config, state, x_train, targets, validation, logger, stop_after, verbose)
    if state["epoch"] < config.epochs:
        print(f"stopped after epoch {state['epoch']}; continue with --resume", file=log_file)
        return None

    final = build_wrn(config.depth, config.width, mean=state["mean"], std=state["std"])
    final.set_weights(model.get_weights())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    final.save(out)
    report = accuracy_report(final, *test) if test is not None else None
    counts = {"train": len(x_train), "validation": len(x_val),
              "test": len(test[0]) if test is not None else 0}
    card = build_card(config, state, final, out.stem, source, counts, report)
    write_model_card(out, card)
    return card
