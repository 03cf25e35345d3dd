"""`partcheck predict`, `train`, `check-model`, `evaluate` and `audit-data` (heavy imports stay inside)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.predict.train.config import AUDIT_SAME, TrainConfig

if TYPE_CHECKING:
    from services.predict.train.audit import Copy

DEFAULT_DATA = Path("../shared/data/casting/train")
# The training defaults live in one place; the config module is plain data, so importing it is cheap.
_T = TrainConfig
_WIDTHS = ",".join(map(str, _T.widths))
_SCALE_MIN, _SCALE_MAX = _T.aug_scale
_PIT_DEPTH_MIN, _PIT_DEPTH_MAX = _T.synth_pinhole_depth


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _widths(text: str) -> tuple[int, ...]:
    """'16,24,48' -> (16, 24, 48); a clear error for anything else."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise _fail(f"--widths must be comma-separated integers, not {text!r}") from None
    if not widths or min(widths) < 1:
        raise _fail(f"--widths needs at least one positive channel count, not {text!r}")
    return widths


def predict(
    images: Annotated[list[Path], typer.Argument(help="image files (JPEG, PNG, BMP, TIFF)")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the configured one)")] = None,
) -> None:
    """Classify local image files with the configured model, with no AWS involved."""
    from partcheck.errors import InvalidImage, ModelError, PartcheckError
    from services.predict.backends import load_classifier
    from services.predict.settings import PredictSettings

    try:
        settings = PredictSettings()
        if model is not None:
            settings = settings.model_copy(update={"model_path": model})
        if settings.backend != "onnx":
            raise _fail("`partcheck predict` runs the local ONNX model; unset PARTCHECK_PREDICT_BACKEND")
        classifier = load_classifier(settings)
    except (ModelError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    failures = 0
    for path in images:
        result: dict[str, object] = {"file": str(path)}
        try:
            data = path.read_bytes()
            if len(data) > settings.max_image_bytes:
                raise InvalidImage(f"{len(data)} bytes is over the limit of {settings.max_image_bytes}")
            prediction = classifier.predict([data])[0]
            result.update(prediction.model_dump(mode="json"))
        except (OSError, PartcheckError) as exc:
            failures += 1
            result.update({"label": "rejected", "error": str(exc)})
        if as_json:
            typer.echo(json.dumps(result))
        elif "error" in result:
            typer.echo(f"{path}: rejected: {result['error']}")
        else:
            extra = f"  ({result['reason']})" if result.get("reason") else ""
            typer.echo(
                f"{path}: {result['label']}  confidence {result['confidence']:.3f}  "
                f"p_defect {result['p_defect']:.3f}{extra}"
            )
    if failures:
        raise typer.Exit(1)


def train(
    data: Annotated[Path, typer.Option(help="folder with def_front/ and ok_front/")] = DEFAULT_DATA,
    out: Annotated[Path, typer.Option(help="where the ONNX file and its card go")] = Path("models"),
    epochs: Annotated[int, typer.Option(min=1)] = _T.epochs,
    size: Annotated[int, typer.Option(min=32, max=512, help="input side in pixels")] = _T.size,
    batch_size: Annotated[int, typer.Option(min=2)] = _T.batch_size,
    lr: Annotated[float, typer.Option(min=0.0, help="peak learning rate (one-cycle)")] = _T.lr,
    grad_clip: Annotated[float, typer.Option(min=0.0, help="gradient-norm clip (0: off)")] = _T.grad_clip,
    defect_weight: Annotated[
        float, typer.Option(min=0.01, help="loss weight of defects vs ok")
    ] = _T.defect_weight,
    focal_gamma: Annotated[
        float, typer.Option(min=0.0, help="focal-loss exponent (0: cross-entropy)")
    ] = _T.focal_gamma,
    consistency_weight: Annotated[
        float,
        typer.Option(min=0.0, help="two augmented views per photo, weighing their disagreement (0: one)"),
    ] = _T.consistency_weight,
    pool: Annotated[bool, typer.Option(help="max-pool after each stage instead of strided convs")] = _T.pool,
    pool_first_from: Annotated[
        int | None,
        typer.Option(min=1, help="with --pool: from this stage on, pool before the widening conv (cheaper)"),
    ] = _T.pool_first_from,
    head_pool: Annotated[
        str, typer.Option(help="global pooling before the head: avg or avgmax")
    ] = _T.head_pool,
    widths: Annotated[str, typer.Option(help="channels per stage, comma-separated")] = _WIDTHS,
    double_from: Annotated[int, typer.Option(min=0, help="first stage with a second conv")] = _T.double_from,
    stem_stride: Annotated[
        int, typer.Option(min=1, help="stride of the first layer (1: plain 3x3)")
    ] = _T.stem_stride,
    stem_kernel: Annotated[int, typer.Option(min=1, help="kernel of a strided first layer")] = _T.stem_kernel,
    local_contrast: Annotated[
        bool, typer.Option(help="add an input channel relative to a 5 px closing (small dark spots)")
    ] = _T.local_contrast,
    part_framing: Annotated[
        bool, typer.Option(help="locate the part and cut it in the training framing (train and predict)")
    ] = _T.part_framing,
    aug_scale_min: Annotated[float, typer.Option(help="smallest zoom of the augmentation")] = _SCALE_MIN,
    aug_scale_max: Annotated[float, typer.Option(help="largest zoom-in of the augmentation")] = _SCALE_MAX,
    aug_shift: Annotated[float, typer.Option(help="largest shift, as a fraction of the side")] = _T.aug_shift,
    aug_blur_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="probability of a Gaussian blur")
    ] = _T.aug_blur_p,
    aug_lowres_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="probability of a resolution loss")
    ] = _T.aug_lowres_p,
    synth_pinhole_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of ok photos given synthetic rim pits, as defects")
    ] = _T.synth_pinhole_p,
    synth_pinhole_depth_min: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="shallowest synthetic pit, as a share of the brightness")
    ] = _PIT_DEPTH_MIN,
    synth_pinhole_depth_max: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="deepest synthetic pit")
    ] = _PIT_DEPTH_MAX,
    synth_pit_pairs: Annotated[
        int, typer.Option(min=0, help="pitted copies of this many ok photos added to each batch, as defects")
    ] = _T.synth_pit_pairs,
    synth_pit_curriculum: Annotated[
        int, typer.Option(min=0, help="epochs over which the copies' pits shrink from deep blobs to size")
    ] = _T.synth_pit_curriculum,
    synth_pit_weight: Annotated[
        float, typer.Option(min=0.0, help="loss weight of a pitted copy (real defects: --defect-weight)")
    ] = _T.synth_pit_weight,
    synth_pit_sharp: Annotated[
        bool, typer.Option(help="keep pitted pairs out of the blur and resolution loss that can erase a pit")
    ] = _T.synth_pit_sharp,
    synth_pit_min_scale: Annotated[
        float | None, typer.Option(min=0.1, help="smallest zoom of a pitted pair (default: augmentation's)")
    ] = _T.synth_pit_min_scale,
    synth_pit_stamps: Annotated[
        Path | None,
        typer.Option(help="JSON of pinholes marked on training photos: copy them instead of painting pits"),
    ] = _T.synth_pit_stamps,
    pit_aux_weight: Annotated[
        float, typer.Option(min=0.0, help="weight of the loss that makes a stage locate the pits (0: none)")
    ] = _T.pit_aux_weight,
    pit_aux_stage: Annotated[
        int, typer.Option(min=0, help="stage whose map locates the pits")
    ] = _T.pit_aux_stage,
    oversample_marked: Annotated[
        Path | None,
        typer.Option(help="JSON of pinholes marked on training photos: draw those photos more often"),
    ] = _T.oversample_marked,
    oversample_times: Annotated[
        int, typer.Option(min=1, help="how often per epoch a marked photo is drawn")
    ] = _T.oversample_times,
    seed: Annotated[int, typer.Option()] = _T.seed,
    threads: Annotated[int, typer.Option(min=1)] = _T.threads,
    val_fraction: Annotated[float, typer.Option(min=0.05, max=0.5)] = _T.val_fraction,
    val_fold: Annotated[
        int,
        typer.Option(
            min=0, help="validation = hash range [fold, fold + 1) x val-fraction (cross-validation)"
        ),
    ] = _T.val_fold,
    groups: Annotated[
        Path | None,
        typer.Option(help="near-duplicate groups (audit-data --groups): keep each group on one side"),
    ] = _T.groups,
    limit: Annotated[
        int | None, typer.Option(help="at most this many images per class (smoke runs)")
    ] = _T.limit,
    max_escapes: Annotated[int, typer.Option(min=0, help="escapes allowed on validation")] = _T.max_escapes,
    margin: Annotated[float, typer.Option(min=0.0, help="threshold safety margin in logits")] = _T.margin,
    fp16_weights: Annotated[
        bool, typer.Option(help="store conv weights as float16 (half the file; float32 arithmetic)")
    ] = _T.fp16_weights,
    skip_checks: Annotated[bool, typer.Option(help="skip the post-export checks (smoke runs)")] = False,
) -> None:
    """Train the defect classifier from scratch and export it to ONNX with its model card."""
    try:
        from services.predict.train.trainer import train as run_training
    except ImportError as exc:
        raise _fail(f"training needs the train extra (pip install -e '.[train]'): {exc}") from exc
    from partcheck.errors import InvalidInput, ModelError

    cfg = TrainConfig(
        data_dir=data,
        out_dir=out,
        epochs=epochs,
        size=size,
        batch_size=batch_size,
        lr=lr,
        grad_clip=grad_clip,
        defect_weight=defect_weight,
        focal_gamma=focal_gamma,
        consistency_weight=consistency_weight,
        pool=pool,
        pool_first_from=pool_first_from,
        head_pool=head_pool,
        widths=_widths(widths),
        double_from=double_from,
        stem_stride=stem_stride,
        stem_kernel=stem_kernel,
        local_contrast=local_contrast,
        part_framing=part_framing,
        aug_scale=(aug_scale_min, aug_scale_max),
        aug_shift=aug_shift,
        aug_blur_p=aug_blur_p,
        aug_lowres_p=aug_lowres_p,
        synth_pinhole_p=synth_pinhole_p,
        synth_pinhole_depth=(synth_pinhole_depth_min, synth_pinhole_depth_max),
        synth_pit_pairs=synth_pit_pairs,
        synth_pit_curriculum=synth_pit_curriculum,
        synth_pit_weight=synth_pit_weight,
        synth_pit_sharp=synth_pit_sharp,
        synth_pit_stamps=synth_pit_stamps,
        synth_pit_min_scale=synth_pit_min_scale,
        pit_aux_weight=pit_aux_weight,
        pit_aux_stage=pit_aux_stage,
        oversample_marked=oversample_marked,
        oversample_times=oversample_times,
        seed=seed,
        threads=threads,
        val_fraction=val_fraction,
        val_fold=val_fold,
        groups=groups,
        limit=limit,
        max_escapes=max_escapes,
        margin=margin,
        fp16_weights=fp16_weights,
    )
    try:
        card = run_training(cfg)
    except (InvalidInput, ModelError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if not skip_checks:
        from services.predict.train.validate import validate_model

        typer.echo(
            "checking the exported model on validation, re-framed copies and synthetic OOD...", err=True
        )
        validate_model(out / card["file"], data, cfg.split)
        from services.predict.onnx_backend import card_path_for

        # The checks rewrote the card on disk (final OOD, scene and blur limits besides the metrics):
        # the markdown must come from that card, not from the trainer's preliminary one.
        card = json.loads(card_path_for(out / card["file"]).read_text())
    from services.predict.train.report import write_model_card_md

    write_model_card_md(card, out / "MODEL_CARD.md")
    typer.echo(
        json.dumps(
            {
                "model": str(out / card["file"]),
                "version": card["version"],
                "thresholds": card["thresholds"],
                "metrics": card["metrics"],
            },
            indent=2,
        )
    )


def check_model(
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one)")] = None,
    data: Annotated[Path, typer.Option(help="the folder the model was trained on")] = DEFAULT_DATA,
    force: Annotated[
        bool, typer.Option(help="accept a folder other than the one the card was trained on")
    ] = False,
) -> None:
    """Re-run a trained model's post-export calibration and checks (train's last step); update its card."""
    import shlex
    from datetime import UTC, datetime

    from partcheck.errors import InvalidInput, ModelError
    from services.predict.onnx_backend import card_path_for, check_sha256, save_card
    from services.predict.settings import DEFAULT_MODEL
    from services.predict.train.data import SplitSpec, data_hash, list_items
    from services.predict.train.report import write_model_card_md
    from services.predict.train.validate import validate_model

    model = model or DEFAULT_MODEL
    card_path = card_path_for(model)
    try:
        if not model.is_file() or not card_path.is_file():
            raise ModelError(f"{model} or its card {card_path} not found")
        raw = json.loads(card_path.read_text())
        # The sha256 only: the limits this command replaces may be unreadable (an older scene descriptor).
        check_sha256(model, str(raw["sha256"]))
        # The limits are fitted on this folder's split: on any other folder (a held-out set, say) they
        # would be tuned on data meant for measuring, and the card would still call it validation.
        if not force and data_hash(list_items(data)) != raw["training"]["data_sha256"]:
            raise InvalidInput(
                f"{data} is not the data the card was trained on (its sha256 differs from "
                "training.data_sha256); pass --force to fit the limits on it anyway"
            )
        metrics = validate_model(model, data, SplitSpec.from_config(raw["training"]["config"]))
    except (ModelError, InvalidInput, KeyError, TypeError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    card = json.loads(card_path.read_text())
    # The weights are the trained ones; only the limits and metrics come from this later run.
    card["checks"] = {
        "command": shlex.join(
            ["partcheck", "check-model", "--model", str(model), "--data", str(data)] + ["--force"] * force
        ),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    save_card(card_path, card)
    write_model_card_md(card, model.with_name("MODEL_CARD.md"))
    typer.echo(json.dumps({"model": str(model), "version": card["version"], "metrics": metrics}, indent=2))


def evaluate(
    data: Annotated[Path, typer.Option(help="folder with def_front/ and ok_front/")],
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the configured one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    report: Annotated[Path | None, typer.Option(help="write PNG plots and a markdown summary here")] = None,
    choose_band: Annotated[
        bool, typer.Option(help="also choose the card's zero-escape band on these photos (a new camera)")
    ] = False,
    margin: Annotated[
        float | None, typer.Option(min=0.0, help="--choose-band's margin in logits (default: the card's)")
    ] = None,
) -> None:
    """Evaluate a model on a folder laid out as def_front/ and ok_front/, at its card's thresholds."""
    from partcheck.errors import InvalidInput, ModelError
    from services.predict.onnx_backend import OnnxClassifier
    from services.predict.settings import PredictSettings
    from services.predict.train.evaluate import evaluate_folder, format_band, format_text, warnings

    try:
        settings = PredictSettings()
        if settings.thresholds() is not None:
            # The services honour these; a measurement of the model must not silently change with them.
            typer.echo("note: PARTCHECK_PREDICT_ thresholds ignored; the card's band is used", err=True)
        classifier = OnnxClassifier(model or settings.model_path)
        result = evaluate_folder(classifier, data)
        band = None
        if choose_band:
            trained = classifier.card.raw.get("training", {}).get("config", {}).get("margin", 0.5)
            band = result.chosen_band(float(trained) if margin is None else margin)
    except (ModelError, InvalidInput, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if report is not None:
        try:
            from services.predict.train.report import write_report
        except ImportError as exc:
            raise _fail(f"--report needs matplotlib (the train extra): {exc}") from exc
        write_report(result, report)
    if as_json:
        for line in warnings(result):
            typer.echo(line, err=True)
        typer.echo(json.dumps(result.summary() | ({"chosen_band": band} if band is not None else {})))
    else:
        sys.stdout.write(format_text(result))
        if band is not None:
            sys.stdout.write(format_band(band))


def _copies(found: Sequence[Copy], limit: int = 20) -> None:
    for c in sorted(found, key=lambda c: -c.corr)[:limit]:
        typer.echo(f"  {c.a}  =  {c.b}  ({c.corr:.3f})")
    if len(found) > limit:
        typer.echo(f"  ... {len(found) - limit} more (--json lists all)")


def audit_data(
    data: Annotated[Path, typer.Option(help="folder with def_front/ and ok_front/")] = DEFAULT_DATA,
    against: Annotated[
        Path | None,
        typer.Option(help="instead: which photos of --data have a near-duplicate in this (training) folder"),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="the training split's validation share")
    ] = _T.val_fraction,
    same: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="detail share that makes two files near-duplicates")
    ] = AUDIT_SAME,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    fail_on_conflicts: Annotated[
        bool, typer.Option(help="exit 1 when an opposite-label near-duplicate is found")
    ] = False,
    groups: Annotated[
        Path | None,
        typer.Option(help="instead: join near-duplicates into groups and write them here (train --groups)"),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="processes that score pairs (--groups)")] = 1,
) -> None:
    """Near-duplicates filed under both labels, and validation photos with one in training; --against:
    a folder's near-duplicates in training; --groups: near-duplicate groups for a split that keeps them."""
    from partcheck.errors import InvalidInput
    from services.predict.train.audit import audit, audit_against, copy_groups
    from services.predict.train.data import Item, list_items, scan_folder

    def progress(done: int, total: int) -> None:
        if done and done % 1000 == 0:
            typer.echo(f"{done}/{total} photos", err=True)

    def in_data(item: Item) -> str:
        return str(item.path.relative_to(data))

    if against is not None and groups is not None:
        raise _fail("--against and --groups are two different audits: pass one")
    try:
        if groups is not None:
            grouped = copy_groups(list_items(data), in_data, same, workers=workers, progress=progress)
            summary = grouped.summary()
            groups.parent.mkdir(parents=True, exist_ok=True)
            groups.write_text(json.dumps(summary, indent=1) + "\n")
            typer.echo(json.dumps({k: v for k, v in summary.items() if k != "groups"}))
            return
        if against is not None:
            # A held-out folder is read as `evaluate` reads it (subfolders too), the reference as training.
            reference = list_items(against)
            cross = audit_against(
                scan_folder(data).items,
                reference,
                in_data,
                lambda it: str(it.path.relative_to(against)),
                same,
                progress=progress,
            )
        else:
            found = audit(list_items(data), in_data, val_fraction, same, progress=progress)
    except InvalidInput as exc:
        raise _fail(str(exc)) from exc
    if against is not None:
        if as_json:
            typer.echo(json.dumps(cross.summary()))
        else:
            typer.echo(
                f"{len(cross.copies)} of {cross.photos} photos have a near-duplicate among the "
                f"{cross.reference} of {against} (detail share >= {cross.same})"
            )
            typer.echo(f"filed there under the other label: {len(cross.other_label)}")
            _copies(cross.other_label)
        if fail_on_conflicts and cross.other_label:
            raise typer.Exit(1)
        return
    if as_json:
        typer.echo(json.dumps(found.summary()))
    else:
        typer.echo(
            f"{found.photos} photos, {found.pairs_verified} candidate pairs verified "
            f"(near-duplicates at a detail share >= {found.same})"
        )
        typer.echo(
            f"filed under both labels: {len(found.conflicts)} pairs, {len(found.conflict_photos)} photos"
        )
        _copies(found.conflicts)
        typer.echo(
            f"validation photos with a near-duplicate in training: {len(found.across_split)} "
            f"of {found.validation}"
        )
    if fail_on_conflicts and found.conflicts:
        raise typer.Exit(1)
