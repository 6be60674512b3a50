"""Fine-tune a WRN so that its class-activation maps find objects: a short run on a GPU.

Runs on any Keras 3 backend (torch on the lent GPU machine, TensorFlow here for a smoke run).
Each step trains on two batches:

- **CIFAR-10 images** at 32x32 (random crop of the 4-pixel reflection-padded image, flip):
  cross-entropy with label smoothing 0.1 on the logits, as the original training did, so the
  classifier keeps its accuracy at its native size.
- **Synthetic scenes** (this file's own generator, not ``sensitivity.metrics.scenes``, and no
  photograph: the benchmark's backgrounds stay unseen): 0-3 training objects of different
  classes, sides 12-88 pixels (log-uniform), pasted with hard or feathered edges onto one of
  several procedural backgrounds (coloured 1/f noise, sky-like gradients, flat colour with
  noise, stripes, checkers, blurred or 4x4-tile-scrambled CIFAR images, and blends of two), then
  illumination, sensor noise and JPEG. The loss is per position of ``final_relu`` (stride 4):
  the ``logits`` layer applied to each position's features gives ten per-position logits (the
  model's own logits are their mean, the head being global average pooling + dense), trained
  with binary cross-entropy towards each class's share of the 4x4 cell covered by an object of
  that class (0 on the background).

The inference model keeps its layers and names; only its weights change. The learning rate
follows a linear warm-up then cosine decay over wall-clock time (``--minutes``), so the run
ends on time whatever the machine's speed; the model is saved every ``--save-every`` seconds
and at the end.

    python training/finetune_scenes.py --objects training/objects.npz \
        --init models/wrn-16-3.keras --out /tmp/wrn-16-3-scenes.keras --minutes 7
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import time
from collections import deque

import numpy as np
from PIL import Image
from scipy import ndimage

NUM_CLASSES = 10
STRIDE = 4  # pixels per position of final_relu in a WRN


# --- data (plain numpy, run in worker processes) ------------------------------------------

_OBJECTS: np.ndarray | None = None
_LABELS: np.ndarray | None = None


def decode_objects(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 32, 32, 3)`` uint8 images and ``(N,)`` labels from a ``pack_objects`` file."""
    packed = np.load(path)
    jpeg, offsets = packed["jpeg"], packed["offsets"]
    images = np.stack([
        np.asarray(Image.open(io.BytesIO(jpeg[a:b].tobytes())).convert("RGB"))
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ])
    return images, packed["labels"].astype(np.int64)


def _init_worker(path: str) -> None:
    global _OBJECTS, _LABELS
    _OBJECTS, _LABELS = decode_objects(path)


def _spectral(h: int, w: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None] * rng.uniform(0.5, 2.0)
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = np.inf
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) * f ** (-beta / 2), s=(h, w))
    return (field - field.mean()) / max(field.std(), 1e-9)


def _palette(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stops = rng.uniform(0, 255, (int(rng.integers(2, 6)), 3))
    grey = stops.mean(axis=1, keepdims=True)
    stops = grey + rng.uniform(0.15, 0.8) * (stops - grey)
    t = 0.5 + 0.5 * np.tanh(field * rng.uniform(0.5, 1.5))
    pos = np.linspace(0, 1, len(stops))
    return np.stack([np.interp(t, pos, stops[:, c]) for c in range(3)], -1)


def _cifar_patch(h: int, w: int, rng: np.random.Generator, scrambled: bool) -> np.ndarray:
    """A background from training images with no object left in it: 4x4 tiles shuffled, or a
    strong blur of one image, upscaled to the canvas."""
    if scrambled:
        picks = _OBJECTS[rng.integers(len(_OBJECTS), size=4)]
        tiles = picks.reshape(4, 8, 4, 8, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 4, 4, 3)
        tiles = tiles[rng.permutation(len(tiles))][:64]
        grid = tiles.reshape(8, 8, 4, 4, 3).transpose(0, 2, 1, 3, 4).reshape(32, 32, 3)
        scale = rng.uniform(1.0, 3.0)
    else:
        grid = ndimage.gaussian_filter(
            _OBJECTS[rng.integers(len(_OBJECTS))].astype(np.float64), (4, 4, 0), mode="reflect"
        )
        scale = rng.uniform(2.0, 4.0)
    side = max(8, int(32 * scale))
    big = np.asarray(Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize(
        (side, side), Image.Resampling.BILINEAR), np.float64)
    reps = (math.ceil(h / side), math.ceil(w / side), 1)
    return np.tile(big, reps)[:h, :w]


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """``(h, w, 3)`` float64 pixel values (0..255, unclipped) of a random procedural kind."""
    kind = rng.choice(["fractal", "fractal", "sky", "flat", "stripes", "checker", "scrambled",
                       "blurred", "blend"], p=[.2, .1, .12, .1, .08, .08, .1, .1, .12])
    y, x = np.mgrid[0:h, 0:w]
    if kind == "fractal":
        pixels = _palette(_spectral(h, w, rng.uniform(1.0, 3.0), rng), rng)
    elif kind == "sky":
        top, low = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (y / max(h - 1, 1))[..., None]
        pixels = top + t * (low - top) + 20 * _spectral(h, w, 3.0, rng)[..., None]
        line = rng.uniform(0.4, 0.9) * h + 0.05 * h * _spectral(1, w, 2.5, rng)[0]
        below = (y > line[None, :])[..., None]
        pixels = np.where(below, _palette(_spectral(h, w, rng.uniform(1, 2.5), rng), rng), pixels)
    elif kind == "flat":
        pixels = rng.uniform(0, 255, 3) + rng.uniform(0, 30) * rng.standard_normal((h, w, 3))
    elif kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = a + wave[..., None] * (b - a)
    elif kind == "checker":
        cell = int(rng.integers(3, 17))
        odd = ((y // cell + x // cell) % 2).astype(bool)[..., None]
        pixels = np.where(odd, rng.uniform(0, 255, 3), rng.uniform(0, 255, 3))
    elif kind in ("scrambled", "blurred"):
        pixels = _cifar_patch(h, w, rng, kind == "scrambled")
    else:
        a, b = background(h, w, rng), background(h, w, rng)
        m = 0.5 + 0.5 * np.tanh(2 * _spectral(h, w, 3.0, rng))[..., None]
        pixels = m * a + (1 - m) * b
    return pixels


def _alpha(side: int, feather: int) -> np.ndarray:
    idx = np.arange(side)
    edge = np.minimum(idx + 1, side - idx)
    d = np.minimum(edge[:, None], edge[None, :]).astype(np.float64)
    if feather == 0:
        return np.ones((side, side))
    t = np.clip(d / (feather + 1), 0, 1)
    return t * t * (3 - 2 * t)


def _place(sides, h, w, rng, overlap: bool):
    for _ in range(200):
        boxes = []
        for s in sides:
            y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            boxes.append((y0, x0, s))
        if overlap or all(
            a[0] + a[2] + 4 <= b[0] or b[0] + b[2] + 4 <= a[0]
            or a[1] + a[2] + 4 <= b[1] or b[1] + b[2] + 4 <= a[1]
            for i, a in enumerate(boxes) for b in boxes[i + 1:]
        ):
            return boxes
    return boxes[:1]


def scene(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(h, w, 3)`` uint8 pixels and ``(h // 4, w // 4, 10)`` float32 targets
    (each class's share of a 4x4 cell covered by an object of that class)."""
    canvas = background(h, w, rng)
    count = int(rng.choice([0, 1, 2, 3], p=[0.08, 0.42, 0.3, 0.2]))
    classes = rng.choice(NUM_CLASSES, count, replace=False)
    hi = min(h, w, 88)
    sides = [int(np.exp(rng.uniform(np.log(12), np.log(hi)))) for _ in classes]
    boxes = _place(sides, h, w, rng, overlap=rng.random() < 0.2) if count else []
    owner = np.full((h, w), -1, np.int64)
    for c, (y0, x0, s) in zip(classes, boxes, strict=False):  # placing may drop some
        members = np.flatnonzero(_LABELS == c)
        obj = _OBJECTS[members[rng.integers(members.size)]]
        if rng.random() < 0.5:
            obj = obj[:, ::-1]
        resample = [Image.Resampling.BILINEAR, Image.Resampling.LANCZOS,
                    Image.Resampling.BICUBIC][int(rng.integers(3))]
        pixels = np.asarray(Image.fromarray(np.ascontiguousarray(obj)).resize((s, s), resample),
                            np.float64)
        pixels = pixels * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
        feather = 0 if rng.random() < 0.3 else int(rng.integers(1, max(2, s // 6) + 1))
        a = _alpha(s, feather)[..., None]
        region = canvas[y0:y0 + s, x0:x0 + s]
        canvas[y0:y0 + s, x0:x0 + s] = a * pixels + (1 - a) * region
        owner[y0:y0 + s, x0:x0 + s] = c
    strength = rng.uniform(-0.3, 0.3)
    tilt = rng.uniform(-1, 1) * (np.arange(h)[:, None] - h / 2) / h
    light = 1 + strength * ((np.arange(w)[None, :] - w / 2) / w + tilt)
    canvas = canvas * light[..., None] + rng.uniform(0, 10) * rng.standard_normal(canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(50, 96)))
        image = np.asarray(Image.open(buffer).convert("RGB"))
    onehot = (owner[..., None] == np.arange(NUM_CLASSES)).astype(np.float32)
    cells = onehot.reshape(h // STRIDE, STRIDE, w // STRIDE, STRIDE, NUM_CLASSES).mean((1, 3))
    return image, cells


SHAPES = [(96, 96)] * 4 + [(96, 64), (64, 96), (96, 80), (80, 96), (96, 72), (72, 96), (64, 64)]


def scene_batch(seed: tuple[int, int], size: int,
                shapes: tuple[tuple[int, int], ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """``size`` scenes of one shape (drawn from ``SHAPES`` + ``shapes``): ``(B, H, W, 3)``
    float32 and ``(B, H/4, W/4, 11)`` targets (the last channel: the weight, 1)."""
    rng = np.random.default_rng(seed)
    choices = SHAPES + list(shapes)
    h, w = choices[int(rng.integers(len(choices)))]
    images, targets = zip(*(scene(h, w, rng) for _ in range(size)), strict=True)
    targets = np.stack(targets)
    weight = np.ones(targets.shape[:-1] + (1,), np.float32)
    return np.stack(images).astype(np.float32), np.concatenate([targets, weight], -1)


def cifar_batch(seed: tuple[int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` augmented training images ``(B, 32, 32, 3)`` float32 and smoothed one-hot
    targets ``(B, 11)`` (the last column: the weight, 1)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(_OBJECTS), size=size)
    padded = np.pad(_OBJECTS[pick], ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 9, size), rng.integers(0, 9, size)
    crops = np.stack([p[y:y + 32, x:x + 32] for p, y, x in zip(padded, dy, dx, strict=True)])
    flip = rng.random(size) < 0.5
    crops[flip] = crops[flip, :, ::-1]
    target = np.full((size, NUM_CLASSES), 0.1 / NUM_CLASSES, np.float32)
    target[np.arange(size), _LABELS[pick]] += 0.9
    return crops.astype(np.float32), np.concatenate([target, np.ones((size, 1), np.float32)], -1)


def make_batch(job: tuple[str, tuple[int, int], int, tuple[tuple[int, int], ...]]):
    kind, seed, size, shapes = job
    return kind, scene_batch(seed, size, shapes) if kind == "scene" else cifar_batch(seed, size)


# --- training ----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--scene-batch", type=int, default=128)
    parser.add_argument("--cifar-batch", type=int, default=128)
    parser.add_argument("--peak-lr", type=float, default=0.02)
    parser.add_argument("--dense-weight", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--save-every", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra-shapes", default="",
                        help="canvas shapes added to SHAPES, e.g. 112x112,128x96 (multiples of 4)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many (smoke)")
    args = parser.parse_args()
    shapes = tuple(tuple(int(v) for v in item.split("x"))
                   for item in args.extra_shapes.split(",") if item)
    if any(v % STRIDE for shape in shapes for v in shape):
        parser.error(f"--extra-shapes: every side must be a multiple of {STRIDE}")

    # Workers fork before the framework starts (no GPU state in them).
    pool = multiprocessing.get_context("fork").Pool(args.workers, _init_worker, (args.objects,))
    jobs = ((kind, (args.seed, i), args.scene_batch if kind == "scene" else args.cifar_batch,
             shapes) for i in range(10**9) for kind in ("scene", "cifar"))
    pending = deque(pool.apply_async(make_batch, (next(jobs),)) for _ in range(4 * args.workers))

    import keras
    from keras import ops

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = keras.saving.load_model(args.init, safe_mode=True, compile=False)
    features = model.get_layer("final_relu").output
    per_position = model.get_layer("logits")(features)
    trainer = keras.Model(model.input, {"logits": model.output, "dense": per_position})

    def image_loss(y, logits):
        return -ops.sum(y[:, :-1] * ops.log_softmax(logits, axis=-1), axis=-1) * y[:, -1]

    def dense_loss(y, logits):
        bce = ops.binary_crossentropy(y[..., :-1], logits, from_logits=True)
        return ops.mean(ops.mean(bce, axis=-1) * y[..., -1], axis=(1, 2))

    optimizer = keras.optimizers.SGD(learning_rate=args.peak_lr, momentum=0.9, nesterov=True)
    trainer.compile(optimizer=optimizer, loss={"logits": image_loss, "dense": dense_loss},
                    loss_weights={"logits": 1.0, "dense": args.dense_weight})

    budget = args.minutes * 60
    start = last_save = time.time()
    step, history = 0, {"scene": deque(maxlen=50), "cifar": deque(maxlen=50)}
    log = []

    def save(final: bool):
        model.save(args.out)
        entry = {"step": step, "seconds": round(time.time() - start, 1), "final": final,
                 "scene_loss": float(np.mean(history["scene"])) if history["scene"] else None,
                 "cifar_loss": float(np.mean(history["cifar"])) if history["cifar"] else None}
        log.append(entry)
        with open(args.out + ".log.json", "w") as f:
            json.dump({"args": vars(args), "backend": backend, "log": log}, f, indent=1)
        print("saved", entry, flush=True)

    while True:
        elapsed = time.time() - start
        fraction = min(1.0, elapsed / budget)
        if fraction >= 1.0 or (args.max_steps and step >= args.max_steps):
            break
        warm = 0.05
        lr = (args.peak_lr * (0.1 + 0.9 * fraction / warm) if fraction < warm else
              args.peak_lr * 0.5 * (1 + math.cos(math.pi * (fraction - warm) / (1 - warm))))
        optimizer.learning_rate.assign(lr)
        kind, (x, y) = pending.popleft().get()
        pending.append(pool.apply_async(make_batch, (next(jobs),)))
        if kind == "scene":
            dummy = np.zeros((len(x), NUM_CLASSES + 1), np.float32)
            batch_y = {"logits": dummy, "dense": y}
        else:
            dense = np.zeros((len(x), 32 // STRIDE, 32 // STRIDE, NUM_CLASSES + 1), np.float32)
            batch_y = {"logits": y, "dense": dense}
        losses = trainer.train_on_batch(x, batch_y, return_dict=True)
        history[kind].append(float(losses["loss"]))
        step += 1
        if step % 50 == 0:
            print(f"step {step} t={elapsed:.0f}s lr={lr:.4f} scene={np.mean(history['scene']):.4f}"
                  f" cifar={np.mean(history['cifar']):.4f}", flush=True)
        if time.time() - last_save > args.save_every:
            save(False)
            last_save = time.time()
    save(True)
    pool.terminate()


if __name__ == "__main__":
    main()
