"""`partcheck train`: data split, training loop, calibration, OOD fit, thresholds, ONNX export and card."""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.predict import quality
from services.predict.framing import Framing
from services.predict.framing import fit as framing_fit
from services.predict.onnx_backend import save_card, sha256_file
from services.predict.train import calibrate, data
from services.predict.train.augment import (
    AugmentConfig,
    PinholeConfig,
    add_pinholes,
    add_pit_pairs,
    augment,
    augment_with_masks,
    pit_schedule,
    relabel_hidden_pits,
)
from services.predict.train.config import TrainConfig, path_in_card
from services.predict.train.model import Exported, PartNet, fit_mahalanobis, fold_for_export


def _keep_freed_memory() -> None:
    """Ask glibc to reuse freed heap memory instead of returning large blocks to the kernel.

    A training step at 300 px allocates and frees tensors of 20-40 MB; glibc serves each from a fresh mmap
    and unmaps it on free, so every step paid ~100,000 page faults (a third of its time in the kernel,
    measured: 370-760 ms a step, 255-270 ms with this). Process-wide; elsewhere than glibc it does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_max, m_trim_threshold = -4, -1
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def _batches(
    n: int, batch_size: int, gen: torch.Generator | None, extra: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """One epoch's batches over indices 0..n-1 plus `extra` (repeated indices), shuffled together."""
    pool = torch.arange(n) if extra is None else torch.cat([torch.arange(n), extra])
    order = pool[torch.randperm(len(pool), generator=gen)] if gen is not None else pool
    return [order[i : i + batch_size] for i in range(0, len(pool), batch_size)]


@torch.no_grad()
def _infer(net: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate features for uint8 images, in eval mode."""
    net.eval()
    logits, feats = [], []
    for idx in _batches(len(images), batch_size, None):
        x = torch.from_numpy(images[idx.numpy()]).float().div_(255.0).unsqueeze(1)
        f = net.features(x)  # type: ignore[operator]
        feats.append(f)
        logits.append(net.head(f))  # type: ignore[operator]
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


@torch.no_grad()
def recompute_bn(net: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> None:
    """BatchNorm statistics from clean (unaugmented) images: what the model sees at inference.

    Running statistics collected during training describe augmented batches and lag the weights (and the EMA
    copy has none of its own), which made eval-mode accuracy far worse than train-mode accuracy.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    net.train()
    # Shuffled: the arrays are sorted by class, and single-class batches would average within-class
    # variances only, underestimating each channel's variance (seen: validation accuracy 99.3 % -> 98.9 %).
    for idx in _batches(len(images), batch_size, torch.Generator().manual_seed(0)):
        net(torch.from_numpy(images[idx.numpy()]).float().div_(255.0).unsqueeze(1))
    for bn in bns:
        bn.momentum = 0.1
    net.eval()


def classification_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    focal_gamma: float,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted cross-entropy, optionally focal; gamma 0 is exactly `F.cross_entropy`.

    `sample_weight`, if given, replaces the class weights photo by photo.
    """
    if focal_gamma == 0 and sample_weight is None:
        return F.cross_entropy(logits, target, weight=class_weight)
    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    if sample_weight is not None:
        w = sample_weight
    else:
        w = class_weight[target] if class_weight is not None else torch.ones_like(log_p)
    # Normalised by the weights like F.cross_entropy's weighted mean, so the LR means the same at any gamma.
    return -(w * (1 - log_p.exp()).pow(focal_gamma) * log_p).sum() / w.sum()


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between two views' predictions, averaged over the batch (nats)."""
    p_a, p_b = F.softmax(logits_a, dim=1), F.softmax(logits_b, dim=1)
    log_m = ((p_a + p_b) / 2).clamp_min(1e-7).log()
    return (F.kl_div(log_m, p_a, reduction="batchmean") + F.kl_div(log_m, p_b, reduction="batchmean")) / 2


def _two_view_step(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    aug: AugmentConfig,
    class_weight: torch.Tensor | None,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """The loss of one batch seen in two augmented views: both classified, plus their disagreement."""
    # One forward pass over both views: BatchNorm sees them together, as it sees any batch.
    logits = net(torch.cat([augment(x, aug, gen), augment(x, aug, gen)]))
    first, second = logits.chunk(2)
    ce = classification_loss(logits, torch.cat([y, y]), class_weight, cfg.focal_gamma)
    return ce + cfg.consistency_weight * consistency_loss(first, second)


def pit_map_loss(aux_logits: torch.Tensor, masks: torch.Tensor, supervised: torch.Tensor) -> torch.Tensor:
    """Per-cell BCE of the auxiliary map against "a pit lies in this cell", over the supervised photos.

    A cell is positive where the (warped) pit mask reaches 0.5. Positives are weighted by the number of
    cells, so one pitted cell counts as much as all the clean cells of a photo.
    """
    if not supervised.any():
        # A batch without ok photos (the last one of an epoch can hold two defects): nothing to learn, and
        # the mean of no cells would be NaN, which poisoned a whole run's weights.
        return aux_logits.sum() * 0.0
    side = aux_logits.shape[-1]
    target = (F.adaptive_max_pool2d(masks, side) > 0.5).float()
    per_cell = F.binary_cross_entropy_with_logits(
        aux_logits, target, pos_weight=torch.tensor(float(side * side)), reduction="none"
    )
    return per_cell[supervised].mean()


def _pit_pair_step(
    net: PartNet,
    x: torch.Tensor,
    y: torch.Tensor,
    pits: PinholeConfig,
    aug: AugmentConfig,
    class_weight: torch.Tensor | None,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """The loss of one batch with pitted copies appended (and the pit map's part of it, for the log)."""
    n = x.shape[0]
    x, y, masks, supervised, sources = add_pit_pairs(x, y, cfg.synth_pit_pairs, pits, gen)
    # Both photos of a pair keep sharp or large alike: a blurred original beside a sharp copy would teach
    # "sharp means pitted".
    paired = torch.zeros(len(x), dtype=torch.bool)
    paired[n:] = True
    paired[sources] = True
    sharp = paired if cfg.synth_pit_sharp else None
    floor = paired * cfg.synth_pit_min_scale if cfg.synth_pit_min_scale is not None else None
    x, masks = augment_with_masks(x, masks, aug, gen, sharp, floor)
    y = relabel_hidden_pits(y, masks, n)
    weight = class_weight[y] if class_weight is not None else torch.ones(len(y))
    # A copy the network cannot tell from its ok original (its pit no darker than the castings' own marks)
    # is best answered with p_defect 0.75 at the defect weight (3): 221 of 2,296 clean ok training photos
    # were called defect that way, 246 with the pairs kept sharp. Weight 1 stops that, 0 leaves the pits to
    # the pit map alone (docs/model.md, session 10).
    weight[n:] = cfg.synth_pit_weight
    if cfg.pit_aux_weight == 0:
        return classification_loss(net(x), y, None, cfg.focal_gamma, weight), 0.0
    logits, aux_logits = net.forward_with_aux(x)
    aux = pit_map_loss(aux_logits, masks, supervised)
    loss = classification_loss(logits, y, None, cfg.focal_gamma, weight) + cfg.pit_aux_weight * aux
    return loss, float(aux.detach())


# Every this-many training photo fits the framing template (a median profile: 664 photos are plenty).
FRAMING_FIT_STRIDE = 8


def _fit_framing(train_items: list[data.Item], size: int) -> Framing:
    """The training photos' framing: their median radial edge profile (`framing.fit`)."""
    from services.predict.preprocess import decode

    return framing_fit(decode(it.path.read_bytes(), size).image for it in train_items[::FRAMING_FIT_STRIDE])


def _subset(items: list[data.Item], limit: int | None) -> list[data.Item]:
    if limit is None:
        return items
    out: list[data.Item] = []
    for label in (0, 1):
        out.extend([it for it in items if it.label == label][:limit])
    return out


def train(cfg: TrainConfig, console: Console | None = None) -> dict[str, Any]:
    """Train, calibrate, choose the operating point, export ONNX + card into cfg.out_dir; return the card."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    cpu_started = time.process_time()
    if cfg.consistency_weight > 0 and cfg.synth_pit_pairs > 0:
        raise ValueError("two views per photo and pitted copies do not combine: drop one of them")
    if cfg.pit_aux_weight > 0 and cfg.synth_pit_pairs == 0:
        raise ValueError("the pit map loss needs pitted copies: set synth_pit_pairs (--synth-pit-pairs) > 0")
    if cfg.synth_pit_stamps is not None:
        if cfg.synth_pit_pairs == 0 and cfg.synth_pinhole_p == 0:
            raise ValueError("pinhole stamps replace pits: set --synth-pit-pairs or --synth-pinhole-p too")
        if cfg.size != 300:
            raise ValueError("pinhole marks are positions in 300 px photos: train at --size 300")
    if cfg.oversample_times < 1:
        raise ValueError("--oversample-times must be at least 1")
    torch.set_num_threads(cfg.threads)
    _keep_freed_memory()
    gen = _seed_everything(cfg.seed)
    items = _subset(data.list_items(cfg.data_dir), cfg.limit)
    train_items, val_items = cfg.split.apply(items)
    if not train_items or not val_items or len({it.label for it in val_items}) < 2:
        raise ValueError("the split left a side empty or validation without both classes; add data")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("hash + decode", total=len(items) * 2)
        digest = data.data_hash(items)
        progress.advance(task, len(items))
        framing = _fit_framing(train_items, cfg.size) if cfg.part_framing else None
        x_train, y_train = data.load_arrays(
            train_items, cfg.size, lambda k: progress.advance(task, k), framing
        )
        x_val, y_val = data.load_arrays(val_items, cfg.size, lambda k: progress.advance(task, k), framing)
    console.print(
        f"train {len(train_items)} ({int(y_train.sum())} defect), val {len(val_items)} "
        f"({int(y_val.sum())} defect), size {cfg.size}, data sha256 {digest[:12]}"
    )

    net = PartNet(
        cfg.widths,
        cfg.double_from,
        cfg.pool,
        cfg.head_pool,
        cfg.stem_stride,
        cfg.stem_kernel,
        cfg.pool_first_from,
        cfg.pit_aux_stage if cfg.pit_aux_weight > 0 else None,
        cfg.local_contrast,
    )
    # oneDNN's CPU convolutions are faster on channels-last (NHWC) tensors: a training step (64 images,
    # 300 px, no augmentation, 2 threads, an AVX2 EPYC) took 431-440 ms in torch's default NCHW and
    # 255-267 ms channels-last. A 1-channel input is the same memory either way; the weights decide.
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = torch.optim.swa_utils.AveragedModel(
        net,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.995),  # type: ignore[no-untyped-call]
        use_buffers=False,
    )
    extra = None
    if cfg.oversample_marked is not None:
        marked = data.marked_indices(data.load_pinhole_marks(cfg.oversample_marked), train_items, val_items)
        extra = torch.from_numpy(np.tile(marked, cfg.oversample_times - 1))
        console.print(f"{len(marked)} marked training photos drawn {cfg.oversample_times}x per epoch")
    steps_per_epoch = math.ceil((len(x_train) + (0 if extra is None else len(extra))) / cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2
    )
    aug = AugmentConfig(
        scale=cfg.aug_scale, shift=cfg.aug_shift, blur_p=cfg.aug_blur_p, lowres_p=cfg.aug_lowres_p
    )
    stamps = None
    if cfg.synth_pit_stamps is not None:
        marks = data.load_pinhole_marks(cfg.synth_pit_stamps)
        stamps = data.pinhole_stamps(marks, train_items, val_items, cfg.size)
        console.print(f"{len(stamps)} real pinholes to copy, from {cfg.synth_pit_stamps}")
    pinholes = PinholeConfig(p=cfg.synth_pinhole_p, depth=cfg.synth_pinhole_depth, stamps=stamps)
    # None at weight 1: plain cross-entropy, exactly the arithmetic of the unweighted runs.
    class_weight = torch.tensor([1.0, cfg.defect_weight]) if cfg.defect_weight != 1.0 else None
    history: list[dict[str, float]] = []
    x_train_t = torch.from_numpy(x_train)
    y_train_t = torch.from_numpy(y_train)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("epoch 1", total=cfg.epochs * steps_per_epoch, stats="")
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            total, count, aux_total = 0.0, 0, 0.0
            pits_now = pit_schedule(
                pinholes, (epoch - 1) / cfg.synth_pit_curriculum if cfg.synth_pit_curriculum else 1.0
            )
            for idx in _batches(len(x_train), cfg.batch_size, gen, extra):
                x = x_train_t[idx].float().div_(255.0).unsqueeze(1)
                x, y = add_pinholes(x, y_train_t[idx], pinholes, gen)
                if cfg.consistency_weight > 0:
                    loss = _two_view_step(net, x, y, aug, class_weight, cfg, gen)
                elif cfg.synth_pit_pairs == 0:
                    loss = classification_loss(net(augment(x, aug, gen)), y, class_weight, cfg.focal_gamma)
                else:
                    loss, aux_loss = _pit_pair_step(net, x, y, pits_now, aug, class_weight, cfg, gen)
                    aux_total += aux_loss * len(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                ema.update_parameters(net)
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                progress.update(task, advance=1, stats=f"loss {total / count:.4f}")
            bn_sample = (
                x_train
                if epoch == cfg.epochs
                else x_train[torch.randperm(len(x_train), generator=gen)[:1536].numpy()]
            )
            recompute_bn(ema.module, bn_sample)
            val_logits, _ = _infer(ema.module, x_val)
            val_acc = float(((val_logits[:, 1] > val_logits[:, 0]).astype(np.int64) == y_val).mean())
            val_nll = calibrate.nll(val_logits, y_val, 1.0)
            history.append(
                {"epoch": epoch, "train_loss": total / count, "val_accuracy": val_acc, "val_nll": val_nll}
            )
            if cfg.pit_aux_weight > 0:
                history[-1]["pit_map_loss"] = aux_total / count
            progress.update(
                task,
                description=f"epoch {epoch}/{cfg.epochs}",
                stats=f"loss {total / count:.4f}  val acc {val_acc:.4f}  val nll {val_nll:.4f}",
            )
            pit_map = f"  pit map {aux_total / count:.4f}" if cfg.pit_aux_weight > 0 else ""
            console.print(
                f"epoch {epoch:2d}  loss {total / count:.4f}{pit_map}  val acc {val_acc:.4f}  "
                f"val nll {val_nll:.4f}  {time.perf_counter() - started:.0f}s"
            )
    train_seconds = time.perf_counter() - started
    # CPU time from the start of train(), like `seconds` (until session 13 the card's CPU figure was the
    # process's total, which also counted the imports before it).
    train_cpu_seconds = time.process_time() - cpu_started
    console.print(f"training took {train_seconds:.0f} s wall, {train_cpu_seconds:.0f} s CPU")
    final = ema.module
    assert isinstance(final, PartNet)
    final = final.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    final.eval()
    return _finish(
        cfg,
        final,
        x_train,
        y_train,
        x_val,
        y_val,
        val_items,
        train_items,
        digest,
        history,
        (train_seconds, train_cpu_seconds),
        console,
        framing,
    )


def _finish(
    cfg: TrainConfig,
    net: PartNet,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    val_items: list[data.Item],
    train_items: list[data.Item],
    digest: str,
    history: list[dict[str, float]],
    seconds: tuple[float, float],
    console: Console,
    framing: Framing | None = None,
) -> dict[str, Any]:
    """Calibration, OOD fit, thresholds, export, ONNX check, card; `seconds` = training wall and CPU."""
    from services.predict.train import export
    from services.predict.train.variants import VARIANTS, reframe

    net = fold_for_export(net, cfg.fp16_weights)
    train_logits, train_feats = _infer(net, x_train)
    fit = training_fit(train_logits, y_train)
    console.print(
        f"fit on clean training photos: accuracy {fit['accuracy_argmax']:.4f}, "
        f"{fit['defects_called_ok']} defects called ok, {fit['ok_called_defect']} ok parts called defect"
    )
    means, precision = fit_mahalanobis(torch.from_numpy(train_feats), torch.from_numpy(y_train))
    exported = Exported(net, means, precision).eval()

    val_logits, val_ood = _run_exported(exported, x_val)
    temperature = calibrate.fit_temperature(val_logits, y_val)
    p_raw = calibrate.softmax_defect(val_logits, 1.0)
    p_val = calibrate.softmax_defect(val_logits, temperature)
    ece_before, ece_after = calibrate.ece(p_raw, y_val), calibrate.ece(p_val, y_val)
    console.print(f"temperature {temperature:.3f}; ECE {ece_before:.4f} -> {ece_after:.4f}")

    # Re-framed copies of the validation photos through the shared preprocessing (bytes in, like a camera).
    var_arrays: dict[str, np.ndarray] = {}
    for v in VARIANTS:
        var_arrays[v.name] = np.stack(
            [
                data.as_uint8(reframe(it.path.read_bytes(), v, seed=i), cfg.size, framing)
                for i, it in enumerate(val_items)
            ]
        )
    var_out = {name: _run_exported(exported, arr) for name, arr in var_arrays.items()}

    ood_ref = np.concatenate([val_ood, *[o for _, o in var_out.values()]])
    ood_threshold = float(np.quantile(ood_ref, cfg.ood_quantile) * cfg.ood_factor)

    # Preliminary: the post-export checks (validate.validate_model) set it again from bytes.
    limits = quality.QualityLimits(
        min_sharpness=quality.blur_limit(
            [
                quality.sharpness(quality.view(a.astype(np.float32) / 255))
                for a in [*x_val, *np.concatenate(list(var_arrays.values()))]
            ]
        )
    )

    op = calibrate.choose_thresholds(p_val, y_val, cfg.max_escapes, cfg.max_false_rejects, cfg.margin)
    console.print(
        f"operating point t_ok {op.t_ok:.4f} t_defect {op.t_defect:.4f}: escapes {op.escapes}, "
        f"false rejects {op.false_rejects}, unclear {op.unclear}/{op.n}"
    )
    calibrate.require_band(op, cfg.max_escapes, cfg.max_false_rejects)

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = cfg.out_dir / f"{cfg.name}.onnx"
    # Validation is listed ok first: a stride over it compares defects too, not only 64 ok photos.
    sample = x_val[:: max(1, len(x_val) // 64)][:64]
    max_diff = export.export_onnx(exported, cfg.size, onnx_path, sample, cfg.fp16_weights)
    console.print(
        f"ONNX written: {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB); "
        f"torch/onnxruntime relative difference {max_diff:.2e}"
    )
    sha = sha256_file(onnx_path)
    created = datetime.now(UTC)
    card: dict[str, Any] = {
        "name": cfg.name,
        "version": f"{created:%Y.%m.%d}-{sha[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "file": onnx_path.name,
        "sha256": sha,
        "size_bytes": onnx_path.stat().st_size,
        "input": {
            "name": "image",
            "shape": [None, 1, cfg.size, cfg.size],
            "dtype": "float32",
            "size": cfg.size,
            "preprocessing": "services.predict.preprocess.preprocess: decode (JPEG DCT draft), "
            "EXIF orientation, luminance, "
            + (
                "the square round the located part (input.framing), cut as it is within 8 % of the "
                "input size, else antialiased bilinear resize"
                if framing is not None
                else "centre square crop, antialiased bilinear resize"
            )
            + ", 0-1; per-image standardisation inside the graph",
            **({"framing": framing.to_dict()} if framing is not None else {}),
        },
        "outputs": {
            "logits": "[B, 2] = [ok, defect], divide by temperature before softmax",
            "ood": "[B] Mahalanobis distance / feature dim to the nearest class mean",
        },
        "labels": list(data.LABELS),
        "temperature": temperature,
        "thresholds": {"t_ok": op.t_ok, "t_defect": op.t_defect},
        "ood": {
            "threshold": ood_threshold,
            "method": "mahalanobis",
            "quantile": cfg.ood_quantile,
            "factor": cfg.ood_factor,
        },
        "quality": limits.to_dict(),
        "training": {
            "data_dir": path_in_card(cfg.data_dir),
            "data_sha256": digest,
            "counts": {"train": _counts(y_train), "validation": _counts(y_val)},
            "split": cfg.split.describe(),
            "copy_groups": _marks_file(
                cfg.groups, lambda _: {"groups": len(set((cfg.split.group_keys or {}).values()))}
            ),
            "config": {
                k: (path_in_card(v) if isinstance(v, Path) else v)
                for k, v in asdict(cfg).items()
                if k not in ("command",)
            },
            "pinhole_marks": _marks_file(
                cfg.synth_pit_stamps,
                lambda path: {"marks": len(data.load_pinhole_marks(path))},
            ),
            "oversampled_marks": _marks_file(
                cfg.oversample_marked, lambda _: {"times": cfg.oversample_times}
            ),
            "history": history,
            "seconds": round(seconds[0], 1),
            "cpu_seconds": round(seconds[1], 1),
            "torch": torch.__version__,
        },
        "metrics": {
            "validation": {
                "ece_before": ece_before,
                "ece_after": ece_after,
                "accuracy_argmax": float(((p_val >= 0.5).astype(np.int64) == y_val).mean()),
                "operating_point": asdict(op),
                "onnx_max_rel_diff": max_diff,
            },
            "training_fit": fit,
        },
        "command": cfg.command,
    }
    card_path = cfg.out_dir / f"{cfg.name}.card.json"
    save_card(card_path, card)
    console.print(f"card written: {card_path}")
    return card


def _marks_file(path: Path | None, details: Callable[[Path], dict[str, Any]]) -> dict[str, Any] | None:
    """A file the run read, for the card: path, sha256 (a run depends on its content), details."""
    if path is None:
        return None
    return {"file": path_in_card(path), "sha256": sha256_file(path), **details(path)}


def training_fit(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-label accuracy on the clean (unaugmented) training photos and the two kinds of miss."""
    # A network that misses defects it was trained on lacks capacity or signal for them; one that fits
    # them all and still misses validation ones does not generalise. The two call for different fixes.
    predicted = (logits[:, 1] > logits[:, 0]).astype(np.int64)
    return {
        "n": len(labels),
        "accuracy_argmax": float((predicted == labels).mean()),
        "defects_called_ok": int(((predicted == 0) & (labels == 1)).sum()),
        "ok_called_defect": int(((predicted == 1) & (labels == 0)).sum()),
    }


def _counts(labels: np.ndarray) -> dict[str, int]:
    return {"ok": int((labels == 0).sum()), "defect": int((labels == 1).sum())}


@torch.no_grad()
def _run_exported(model: Exported, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, ood = [], []
    for idx in _batches(len(images), 256, None):
        x = torch.from_numpy(images[idx.numpy()]).float().div_(255.0).unsqueeze(1)
        lg, od = model(x)
        logits.append(lg)
        ood.append(od)
    return torch.cat(logits).numpy(), torch.cat(ood).numpy()
