"""Every parser of ``python -m sensitivity COMMAND ...`` in one place: :func:`build_parser`
and one function per subcommand (serve, train, evaluate, explain, benchmark-maps, calibrate,
fit-positions, card). The commands that run them are in :mod:`sensitivity.cli.commands`."""

from __future__ import annotations

import argparse

from sensitivity.cli import explain
from sensitivity.cli.args import method_limit, non_negative_float, positive_int
from sensitivity.metrics import maps_benchmark
from sensitivity.metrics.fills import FILLS
from sensitivity.metrics.localisation_benchmark import parse_spec
from sensitivity.model.io import DEFAULT_MODEL_PATH
from sensitivity.trust import confidence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sensitivity",
        description="Train, evaluate and explain the CIFAR-10 wide ResNet.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "serve",
        help="start the dashboard (streamlit run app.py) with the model loaded while it starts",
        description="Start the dashboard: 'streamlit run app.py', in this process, while a "
        "background thread loads and warms the model, so the first visitor does not wait for "
        "TensorFlow. Any further arguments go to 'streamlit run' (e.g. --server.port 8502).",
    )

    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_explain_parser(commands)
    add_benchmark_maps_parser(commands)
    add_calibrate_parser(commands)
    add_fit_positions_parser(commands)
    add_card_parser(commands)
    return parser


def add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a WRN (checkpoint every epoch, --resume)")
    train.add_argument(
        "--data-dir", help="class folders (train/ and test/); default: keras.datasets.cifar10"
    )
    train.add_argument(
        "--out", default=str(DEFAULT_MODEL_PATH), help="the .keras file to write (card beside it)"
    )
    train.add_argument(
        "--checkpoint-dir", default="checkpoints", help="where last.keras and state.json go"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run saved in --checkpoint-dir"
    )
    train.add_argument("--depth", type=positive_int, default=16)
    train.add_argument("--width", type=positive_int, default=2)
    train.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs in all (default 30); with --resume, changes the length of the run",
    )
    train.add_argument("--batch-size", type=positive_int, default=128)
    train.add_argument("--peak-lr", type=non_negative_float, default=0.2)
    train.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    train.add_argument("--label-smoothing", type=non_negative_float, default=0.1)
    train.add_argument("--val-size", type=int, default=5000, help="images held out for validation")
    train.add_argument(
        "--low-res-epochs", type=int, default=0, help="first epochs at --low-res-size"
    )
    train.add_argument("--low-res-size", type=positive_int, default=24)
    train.add_argument("--cutout", type=int, default=0,
                       help="side in pixels of the square Cutout fills in each training image "
                            "(0: off)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--init-from",
        help="start from the weights of this .keras model (same depth and width): a warm restart",
    )
    train.add_argument(
        "--teacher",
        action="append",
        help="distil from this .keras model: its flip-averaged probabilities soften the targets; "
        "give it more than once to distil from the ensemble of those models",
    )
    train.add_argument(
        "--teacher-weight",
        type=float,
        default=0.5,
        help="share of the teacher's probabilities in each target (0..1, default 0.5)",
    )
    train.add_argument("--log", help="also append one line per epoch to this file")
    train.add_argument(
        "--stop-after", type=positive_int, help="train at most this many epochs now"
    )


def add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy, confusion matrix, calibration (ECE, NLL, Brier, "
             "raw and calibrated) and out-of-distribution detection",
    )
    evaluate.add_argument(
        "--model", default=None, help="a .keras file with its card (default: the shipped model)"
    )
    evaluate.add_argument("--data-dir", required=True, help="class folders, or a folder with test/")
    evaluate.add_argument("--split", default="test", choices=["train", "test"])
    evaluate.add_argument(
        "--limit", type=positive_int, help="a class-balanced subset of this many images"
    )
    evaluate.add_argument("--photos-dir", default=str(confidence.SHARED_PHOTOS),
                          help="the shared photographs (person crops among the outliers)")
    evaluate.add_argument("--outliers", type=positive_int,
                          default=confidence.OUTLIERS_PER_KIND["test"],
                          help="test outliers of each kind for the out-of-distribution figures")
    evaluate.add_argument("--reliability", metavar="PNG",
                          help="write the reliability diagram (raw and calibrated) to this file")


def add_card_parser(commands) -> None:
    card = commands.add_parser(
        "card", help="write the model card of your own .keras model (its classes, input size)",
        description="Write MODEL.json beside MODEL.keras: the class names (one a line in "
        "--classes, in output order), the native input size, the pixel range 0..255 (any "
        "normalisation must be inside the model), the head read from the model's graph and "
        "the file's sha256.",
    )
    card.add_argument("model", metavar="MODEL", help="the .keras file")
    card.add_argument("--classes", required=True, metavar="TXT",
                      help="a text file with one class name a line, in output order")
    card.add_argument("--input-size", type=positive_int, required=True,
                      help="side in pixels of the images the model was trained on")
    card.add_argument("--name", help="the model's name (default: the file's stem)")
    card.add_argument("--data", default="", help="what it was trained on (free text)")
    card.add_argument("--accuracy", type=non_negative_float,
                      help="its test accuracy, 0..1")


def add_explain_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``explain`` subcommand and its arguments on ``subparsers``."""
    parser = subparsers.add_parser(
        "explain",
        help="write a heatmap, top-k mask, .npy map and JSON for each image file",
        description=(
            "Compute a saliency map of each image (centred square, resized to --size) and write "
            "STEM_heatmap.png, STEM_mask.png (top-k pixels in black), STEM_map.npy and STEM.json "
            "to --out. Unreadable files are skipped and listed; the exit code is then 1."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument(
        "--method", default="gradient", help="attribution method (default gradient)"
    )
    parser.add_argument(
        "--layer",
        default="logits",
        help="logits (default), probabilities, log_probabilities, position_probabilities "
        "(a model with a position head) or a layer name",
    )
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="C",
        help=(
            "class to explain, by name or index 0..9; repeat it or give a comma list to explain "
            "the sum of their scores (default: each image's predicted class)"
        ),
    )
    parser.add_argument("--sign", default="abs", help="abs (default), positive, negative, signed")
    parser.add_argument(
        "--reduce-channels",
        default="max",
        help="how RGB values become one per pixel: max (default), sum, l2",
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=100, help="pixels in the mask (default 100)"
    )
    parser.add_argument(
        "--size", type=positive_int, default=None,
        help="side of the network's input (default: the model's native size, from its card)"
    )
    parser.add_argument(
        "--scale", type=positive_int, default=8, help="heatmap PNG pixels per map pixel"
    )
    parser.add_argument(
        "--out", default=explain.DEFAULT_OUT, help=f"output folder (default {explain.DEFAULT_OUT}/)"
    )
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        type=explain.option_assignment,
        metavar="NAME=VALUE",
        help=(
            "a method option, e.g. --option steps=64 for integrated_gradients; repeat it for "
            "more (options and ranges: the method table of README.md)"
        ),
    )
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    return parser


def add_benchmark_maps_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``benchmark-maps`` subcommand and its arguments on ``subparsers``."""
    parser = subparsers.add_parser(
        "benchmark-maps",
        help="localisation (pointing, CorLoc, MaxBoxAcc), discrimination and faithfulness",
        description=maps_benchmark.__doc__.split("\n\n")[0].split(": ", 1)[1],
    )
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 class folders (train/, test/)")
    parser.add_argument("--photos-dir", default=str(maps_benchmark.SHARED_DATASETS / "photos"),
                        help="photographs for scene backgrounds and the real-photo check")
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    parser.add_argument("--methods", nargs="+", type=parse_spec,
                        default=[parse_spec(m) for m in maps_benchmark.DEFAULT_METHODS],
                        help="methods as name or name:key=value,key=value (controls always run)")
    parser.add_argument("--n", type=positive_int, default=300, help="test scenes")
    parser.add_argument("--validation-n", type=positive_int, default=150,
                        help="validation scenes (choose the box thresholds)")
    parser.add_argument("--limit", action="append", type=method_limit, default=None,
                        help="METHOD=N: measure METHOD on the first N scenes of each set only "
                        f"(default {' '.join(maps_benchmark.DEFAULT_LIMITS)})")
    parser.add_argument("--side", type=positive_int, default=None,
                        help="analysis size: the scene's longer side after resizing (default: "
                        "the side of the model's find_objects rule)")
    parser.add_argument("--faithfulness-n", type=int, default=100,
                        help="native test images for deletion and insertion (0: skip)")
    parser.add_argument("--steps", type=positive_int, default=16, help="deletion/insertion steps")
    parser.add_argument("--fills", default="blur,road",
                        help=f"deletion/insertion fills, comma-separated, of {', '.join(FILLS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene sets")
    parser.add_argument("--out", default="maps-benchmark", help="folder for the reports")
    return parser


def add_calibrate_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``calibrate`` subcommand on ``subparsers``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the temperature and the out-of-distribution detector (validation data only)",
        description=confidence.__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 class folders (train/)")
    parser.add_argument("--photos-dir", default=str(confidence.SHARED_PHOTOS),
                        help="the shared photographs (person crops among the outliers)")
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    parser.add_argument("--layers", nargs="+", default=list(confidence.DEFAULT_LAYERS),
                        help="feature layers of the Mahalanobis candidates")
    parser.add_argument("--train-limit", type=positive_int, default=None,
                        help="fit the Gaussians on this many training images (default: all)")
    parser.add_argument("--outliers", type=positive_int, default=None,
                        help="outlier pictures of each kind (default: "
                             f"{confidence.OUTLIERS_PER_KIND['validation']} for fitting, "
                             f"{confidence.OUTLIERS_PER_KIND['test']} for the test figures)")
    parser.add_argument("--report-test", action="store_true",
                        help="after fitting, measure on the test split and test outliers and "
                             "record the figures in the card")
    return parser


def add_fit_positions_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``fit-positions`` subcommand on ``subparsers``."""
    from sensitivity.model import position_head

    parser = subparsers.add_parser(
        "fit-positions",
        help="fit the model's position head on photo-like scenes (training objects only)",
        description=position_head.__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 class folders (train/)")
    parser.add_argument("--photos-dir", default=None,
                        help="photographs whose regions outside objects serve as backgrounds")
    parser.add_argument("--model", default=None, help="a .keras file with its card")
    parser.add_argument("--scenes", type=positive_int, default=4500,
                        help="training scenes (more than about 5,000 on a 24 GB machine: run "
                        "with TF_ENABLE_ONEDNN_OPTS=0, as oneDNN keeps gigabytes of kernels for "
                        "the scenes' many shapes)")
    parser.add_argument("--epochs", type=positive_int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    return parser
