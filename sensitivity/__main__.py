"""Command line: ``python -m sensitivity COMMAND ...`` (serve, train, evaluate, explain,
benchmark-maps, calibrate, card)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sensitivity.cli import explain
from sensitivity.cli.args import positive_int
from sensitivity.metrics import maps_benchmark
from sensitivity.model.io import DEFAULT_MODEL_PATH
from sensitivity.trust import confidence


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


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

    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    explain.add_parser(commands)
    maps_benchmark.add_parser(commands)
    confidence.add_parser(commands)
    _add_card_parser(commands)
    return parser


def _add_train_parser(commands) -> None:
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
    train.add_argument("--peak-lr", type=_non_negative_float, default=0.2)
    train.add_argument("--weight-decay", type=_non_negative_float, default=5e-4)
    train.add_argument("--label-smoothing", type=_non_negative_float, default=0.1)
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


def _add_evaluate_parser(commands) -> None:
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


def _add_card_parser(commands) -> None:
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
    card.add_argument("--accuracy", type=_non_negative_float,
                      help="its test accuracy, 0..1")


def _card(args) -> int:
    from sensitivity.model.io import card_path, write_operator_card

    try:
        lines = Path(args.classes).read_text().splitlines()
    except OSError as exc:
        raise FileNotFoundError(f"--classes {args.classes} cannot be read: {exc}") from None
    classes = [line.strip() for line in lines if line.strip()]
    card = write_operator_card(args.model, classes, args.input_size, name=args.name,
                               data=args.data, accuracy=args.accuracy)
    print(f"wrote {card_path(args.model)}: {len(classes)} classes, input {args.input_size}px, "
          f"head {card['head']}, sha256 {card['sha256'][:12]}...")
    return 0


def _train(args) -> int:
    from sensitivity.model.data import split_dir
    from sensitivity.model.train import TrainConfig, train
    from sensitivity.model.wrn import blocks_per_group

    blocks_per_group(args.depth)  # fail early with a message
    if args.data_dir:
        split_dir(args.data_dir, "train")
    if not 0 <= args.cutout <= 32:
        raise ValueError("--cutout must be between 0 (off) and 32 pixels")
    if not 0 <= args.teacher_weight <= 1:
        raise ValueError("--teacher-weight must be between 0 and 1")
    if not 0 <= args.val_size < 50000:
        raise ValueError("--val-size must be between 0 and the number of training images")
    config = TrainConfig(
        depth=args.depth,
        width=args.width,
        epochs=args.epochs or TrainConfig.epochs,
        batch_size=args.batch_size,
        peak_lr=args.peak_lr,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        val_size=args.val_size,
        seed=args.seed,
        low_res_epochs=args.low_res_epochs,
        low_res_size=args.low_res_size,
        cutout=args.cutout,
        data_dir=os.path.abspath(args.data_dir) if args.data_dir else None,
        init_from=os.path.abspath(args.init_from) if args.init_from else None,
        teachers=[os.path.abspath(path) for path in args.teacher or []],
        teacher_weight=args.teacher_weight,
    )
    if args.log:
        os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    log = open(args.log, "a") if args.log else None
    try:
        card = train(
            config,
            args.out,
            args.checkpoint_dir,
            resume=args.resume,
            new_epochs=args.epochs if args.resume else None,
            verbose=1 if sys.stdout.isatty() else 2,
            log_file=log,
            stop_after=args.stop_after,
        )
    finally:
        if log:
            log.close()
    if card is None:
        return 0
    accuracy = card.get("test_accuracy")
    print(f"wrote {args.out}" + (f" (test accuracy {100 * accuracy:.2f}%)" if accuracy else ""))
    return 0


def _evaluate(args) -> int:
    from sensitivity.model.cards import model_card
    from sensitivity.model.data import load_split
    from sensitivity.model.evaluate import accuracy_report, format_report
    from sensitivity.model.io import load_model
    from sensitivity.trust.calibration import temperature_of
    from sensitivity.trust.ood import detector_of, model_features

    model = load_model(args.model)
    card = model_card(model)  # its class folders, at its native size
    images, labels = load_split(args.data_dir, args.split, limit=args.limit,
                                class_names=card.class_names, size=card.native_size)
    detector = detector_of(model)
    # One forward pass gives the logits and the detector's features for every figure.
    computed = model_features(model, detector.layers if detector else (), images)
    print(format_report(accuracy_report(model, images, labels, computed[0])))
    report = confidence.measure_confidence(
        model, images, labels, args.photos_dir, temperature_of(model), detector,
        args.outliers, computed,
    )
    print("\n" + confidence.format_confidence(report))
    if args.reliability:
        from PIL import Image

        from sensitivity.render.pictures import reliability_diagram

        panels = [
            (f"raw: ECE {100 * report['raw']['ece']:.1f}%", report["reliability_raw"]),
            (f"calibrated (T = {temperature_of(model):.3f}): ECE "
             f"{100 * report['calibrated']['ece']:.1f}%", report["reliability_calibrated"]),
        ]
        Image.fromarray(reliability_diagram(panels)).save(args.reliability)
        print(f"written: {args.reliability}")
    return 0


APP = Path(__file__).resolve().parent.parent / "app.py"


def _wait_for_streamlit(timeout: float = 60.0) -> None:
    """Return once Streamlit's runtime is up (or after ``timeout`` seconds): the model then
    loads while the first page is served, instead of slowing the server's own start."""
    import time

    from streamlit.runtime import Runtime
    from streamlit.runtime.runtime import RuntimeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state != RuntimeState.INITIAL:
            return
        time.sleep(0.05)


def _serve(args) -> int:
    import faulthandler
    import signal

    from sensitivity.engine.budget import max_work
    from sensitivity.model.io import model_path, verify_model_file
    from sensitivity.web.serving import preload

    if not APP.is_file():
        raise FileNotFoundError(f"the dashboard {APP} is missing (run from a project checkout)")
    verify_model_file(model_path())  # a missing or altered model stops the server at start
    max_work()  # so does a budget ($SENSITIVITY_MAX_WORK) that is no positive number
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID`: every thread's stack to stderr
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    preload(after=_wait_for_streamlit)
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", "run", str(APP), *args.streamlit_args]
    return streamlit_cli.main()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        args.streamlit_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from sensitivity.imaging.images import ImageError
    from sensitivity.model.data import DataError
    from sensitivity.model.io import ModelError

    commands = {
        "serve": _serve,
        "train": _train,
        "evaluate": _evaluate,
        "explain": explain.run,
        "benchmark-maps": maps_benchmark.run,
        "calibrate": confidence.run,
        "card": _card,
    }
    try:
        return commands[args.command](args)
    except (DataError, ModelError, ImageError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
