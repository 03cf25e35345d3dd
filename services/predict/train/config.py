"""What determines a training run (`TrainConfig`): plain data, no torch, so the CLI can take its defaults."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.predict.train.data import SplitSpec

# Depth range of a synthetic pit, as a share of the flange brightness (`augment.PinholeConfig`).
PIT_DEPTH = (0.10, 0.35)

MODEL_NAME = "partcheck-defect"
# A card names the files a run read relative to this checkout when they are inside it, so `check-model` and
# the bench find them from any working directory and in any clone (`path_in_card`, `path_from_card`).
REPO_ROOT = Path(__file__).resolve().parents[3]
# `partcheck audit-data`: the share of fine detail at which two files are one photo (see train/audit.py).
AUDIT_SAME = 0.6


def path_in_card(path: Path) -> str:
    """How a card names a file: relative to the checkout when inside it, otherwise absolute."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else resolved)


def path_from_card(text: str) -> Path:
    """The file a card names (`path_in_card`): a relative name is inside the checkout."""
    path = Path(text)
    return path if path.is_absolute() else REPO_ROOT / path


# Frozen: `split` is cached from these fields, so a field changed afterwards would leave it stale.
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; recorded in the model card."""

    data_dir: Path
    out_dir: Path
    size: int = 300
    epochs: int = 24
    batch_size: int = 64
    lr: float = 2e-3
    # Gradient-norm clip; 0 turns it off. Without it the 300 px run diverged twice mid-schedule (loss
    # 0.10 -> 0.52 at epoch 11, 0.08 -> 0.40 at epoch 18) and ended at 98.9 % instead of 99.5 %.
    grad_clip: float = 1.0
    weight_decay: float = 5e-4
    # Loss weight of the defect class relative to ok (1: plain cross-entropy); >1 makes a missed defect
    # cost more during training, as an escape does on the line. 3 against 1: unclear at zero escapes
    # 3.9 % against 4.3 % on validation, re-framed escapes 0 against 8 (docs/model.md).
    defect_weight: float = 3.0
    # Focal-loss exponent (0: cross-entropy). >0 scales each image's loss by (1 - p_true)^gamma, so the few
    # photos the network still gets wrong late in training (the rim pinholes) dominate the gradient.
    focal_gamma: float = 0.0
    # Weight of a consistency term (0: none): each photo is augmented twice in its batch, both views are
    # classified, and the Jensen-Shannon divergence between their predictions is added to the loss
    # (AugMix's term, weight 12 there), so a shrunk or shifted view must get the verdict the other gets.
    # A batch then holds 2 x batch_size views: halve --batch-size and --epochs to keep the cost.
    # Two runs (docs/model.md, session 15): at 12 every set cost the same but 46 % went to unclear/; at 1
    # the validation band held 8.2 % (shipped 3.6 %) and a shrunk defect got through.
    consistency_weight: float = 0.0
    val_fraction: float = 0.2
    # Which share of the hash range is validation: [fold, fold + 1) x val_fraction. 0 is the split of every
    # shipped model; the others are for cross-validation (docs/model.md, session 19).
    val_fold: int = 0
    seed: int = 0
    threads: int = 2
    widths: tuple[int, ...] = (16, 24, 48, 96, 128)
    double_from: int = 1
    pool: bool = True
    # From this stage on (the stem is 0), max-pool before the widening conv instead of after it (only with
    # `pool`); None: never. onnxruntime per photo on an AVX2 EPYC, interleaved: 1.17 ms as shipped, 0.70 ms
    # from 1, 0.86 ms from 2; unclear on validation 8.6 % from 1, 2.0 % and 9.6 % from 2 over two seeds,
    # against 3.6 % shipped (docs/model.md, session 8).
    pool_first_from: int | None = None
    head_pool: str = "avgmax"
    # A strided first layer over overlapping patches (kernel > stride) lets a 300 px input cost what a
    # 100 px one does; 1 = a plain 3x3 first stage.
    stem_stride: int = 3
    stem_kernel: int = 5
    # A second input channel, the photo relative to its 5 px closing (`model.WithLocalContrast`): 0 on the
    # metal, negative on a spot a few pixels wide, as the median-relative map a matched filter used to find
    # the marked pinholes (docs/model.md, session 11).
    local_contrast: bool = False
    # Locate the part and cut it in the training photos' framing (`services/predict/framing.py`) before
    # the network, in training and inference alike; the card then carries the fitted framing. Without it
    # the centre square is taken, and a shrunk or shifted part reaches the network as it is. Two runs with
    # it: validation band 7.0 and 10.6 % against 3.0-4.8 % without, each the same on every re-framing
    # (docs/model.md, session 14), and 0.6 ms more per photo.
    part_framing: bool = False
    # Zoom range of the geometric augmentation (part size relative to the photo) and the shift.
    aug_scale: tuple[float, float] = (0.65, 1.12)
    aug_shift: float = 0.06
    # Probabilities of the Gaussian blur and of the resolution loss; both can erase a 2-3 px pinhole
    # while the label still says defect.
    aug_blur_p: float = 0.2
    aug_lowres_p: float = 0.1
    # Fraction of ok photos per batch given one or two synthetic rim pits and labelled defect (0: none).
    synth_pinhole_p: float = 0.0
    synth_pinhole_depth: tuple[float, float] = PIT_DEPTH
    # Pitted copies of this many ok photos appended to each batch (0: none), each beside its clean original.
    synth_pit_pairs: int = 0
    # Epochs over which the copies' pits shrink from deep blobs (augment.PIT_START) to the pit size and
    # `synth_pinhole_depth` above; 0 starts at that size.
    synth_pit_curriculum: int = 0
    # Loss weight of a pitted copy (real defects keep `defect_weight`).
    synth_pit_weight: float = 1.0
    # Keep both photos of a pair out of the blur and the resolution loss, which can erase a pit while its
    # copy is still labelled defect.
    synth_pit_sharp: bool = False
    # Smallest zoom for both photos of a pair (None: the augmentation's own, down to 0.65). Zoomed out to
    # 65 %, a 3 px pinhole covers 2 px at half its depth while its copy is still labelled defect.
    synth_pit_min_scale: float | None = None
    # A JSON file of real pinholes marked on training photos (`data.PINHOLE_MARKS`); the copies' pits are
    # then these pinholes copied (`variants.extract_stamp`) instead of painted Gaussians. None paints.
    synth_pit_stamps: Path | None = None
    # Weight of the auxiliary loss that makes stage `pit_aux_stage` say which cell holds a synthetic pit
    # (0: no auxiliary head). Needs `synth_pit_pairs`. The logged training loss includes it times this weight.
    pit_aux_weight: float = 0.0
    pit_aux_stage: int = 1
    # A JSON file of pinholes marked on training photos (`data.PINHOLE_MARKS`); each marked photo is then
    # drawn `oversample_times` times per epoch instead of once. These real, faint rim pinholes are the
    # defects the shipped model fits worst (10 of its 12 training defects called ok are among them). At 4
    # the whole boundary moved towards defect (78 clean ok training photos called defect instead of 7), not
    # onto pinholes (docs/model.md, session 12).
    oversample_marked: Path | None = None
    oversample_times: int = 4
    # A near-duplicate groups file (`partcheck audit-data --groups`): the split keeps each group on one
    # side, so validation holds no photo with a near-duplicate in training. None: split by file name, which
    # leaves 97 % of the casting data's validation photos beside one (docs/model.md, sessions 17-18).
    groups: Path | None = None
    limit: int | None = None
    # Operating point: escapes and false rejects allowed on validation, and the safety margin in logits.
    max_escapes: int = 0
    max_false_rejects: int = 0
    margin: float = 0.5
    # Store the conv weights as float16 in the ONNX file (half its size; onnxruntime computes in float32).
    fp16_weights: bool = False
    # OOD threshold: this quantile of in-distribution validation scores (plain and re-framed) x `ood_factor`.
    ood_quantile: float = 0.999
    ood_factor: float = 1.0
    name: str = MODEL_NAME
    command: str = field(default_factory=lambda: shlex.join(["partcheck", *sys.argv[1:]]))

    @cached_property
    def split(self) -> SplitSpec:
        """The train/validation split these fields describe (its groups file read once per config)."""
        # Imported here: this module stays free of numpy and Pillow, so the CLI can read its defaults cheaply.
        from services.predict.train.data import SplitSpec

        return SplitSpec(self.val_fraction, self.val_fold, self.groups)
