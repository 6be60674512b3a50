"""What each command of ``python -m sensitivity`` does with its parsed arguments: serve, train,
evaluate and card here; explain, benchmark-maps and calibrate are the ``run`` functions of
:mod:`sensitivity.cli.explain`, :mod:`sensitivity.metrics.maps_benchmark` and
:mod:`sensitivity.trust.confidence`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sensitivity.trust import confidence


def card(args) -> int:
    """``card``: write the card of an operator's .keras model."""
    from sensitivity.model.io import card_path, write_operator_card

    try:
        lines = Path(args.classes).read_text().splitlines()
    except OSError as exc:
        raise FileNotFoundError(f"--classes {args.classes} cannot be read: {exc}") from None
    classes = [line.strip() for line in lines if line.strip()]
    written = write_operator_card(args.model, classes, args.input_size, name=args.name,
                                  data=args.data, accuracy=args.accuracy)
    print(f"wrote {card_path(args.model)}: {len(classes)} classes, input {args.input_size}px, "
          f"head {written['head']}, sha256 {written['sha256'][:12]}...")
    return 0


def train(args) -> int:
    """``train``: check the arguments, then train (or resume) and save the model with its card."""
    from sensitivity.model.data import split_dir
    from sensitivity.model.train import TrainConfig
    from sensitivity.model.train import train as train_model
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
        card = train_model(
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


def evaluate(args) -> int:
    """``evaluate``: accuracy, calibration and out-of-distribution figures on a split."""
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


APP = Path(__file__).resolve().parents[2] / "app.py"


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


def serve(args) -> int:
    """``serve``: ``streamlit run app.py`` in this process, the model preloading meanwhile."""
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
