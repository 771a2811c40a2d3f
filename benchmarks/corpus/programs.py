"""The base programs of the corpus, their domain, their half of the calibration split and what the
Medic-API rewriter needs to know about them.

The split is by base program and was fixed before any result was looked at, balancing the domains:
each half has a regression, a classifier, an image model, a sequence model, a multi-model program and
mixed precision. Thresholds may be chosen on ``calibration``; figures are judged on ``held_out``.

``val_var``: the variable that holds the validation loss inside the training loop (the Medic rewrite
calls ``medic.end_epoch(val_loss=<it>)`` right after each assignment to it), or None when the program
has no validation during training; ``epoch_var``: the loop variable of the epoch loop, where
``medic.end_epoch()`` is called without a validation loss when there is none.

``harm_abs``: the absolute part of the harm margin in the metric's units (see ``corpus.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Program:
    name: str
    domain: str
    half: str  # "calibration" | "held_out"
    metric: str
    val_var: str | None = None
    epoch_var: str | None = None
    harm_abs: float = 0.0
    lightning: bool = False  # a Lightning form (runs under the Lightning callback, not the Medic rewrite)

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.py"


PROGRAMS: tuple[Program, ...] = (
    # --- calibration half ---------------------------------------------------------------------------
    Program("house_prices", "tabular regression (log target), SGD momentum, plain tensors", "calibration",
            "val_rmse_log_price", val_var="val_loss"),
    Program("multiclass_mlp", "5-class tabular classification, AdamW + OneCycle, DataLoader, classes",
            "calibration", "val_error", val_var="val_loss", harm_abs=0.01),
    Program("digits_cnn", "CNN + BatchNorm on 8x8 digits, SGD Nesterov + cosine", "calibration", "val_error",
            val_var="vl", harm_abs=0.01),
    Program("char_transformer", "character transformer LM, AdamW warmup+cosine, clipping, step-based",
            "calibration", "val_loss", val_var="val_loss"),
    Program("gan", "GAN on a 2-D ring (two optimizers), step-based, no validation", "calibration",
            "sliced_wasserstein"),
    Program("amp_regression", "fp16 autocast + GradScaler regression, validation every 2nd epoch",
            "calibration", "val_rmse", val_var="val_loss"),
    Program("house_prices_lightning", "Lightning twin of house_prices", "calibration", "val_rmse_log_price",
            lightning=True),
    Program("digits_cnn_lightning", "Lightning twin of digits_cnn", "calibration", "val_error", harm_abs=0.01,
            lightning=True),
    # --- held-out half ------------------------------------------------------------------------------
    Program("poisson_counts", "sparse counts, hand-written Poisson NLL, ReduceLROnPlateau", "held_out",
            "val_poisson_deviance", val_var="val_nll"),
    Program("moons_binary", "binary classification script, BCE-with-logits, step-based, no validation",
            "held_out", "test_error", harm_abs=0.01),
    Program("autoencoder", "MLP autoencoder on digits, sigmoid + BCE, no validation", "held_out",
            "test_recon_mse", epoch_var="epoch"),
    Program("gru_sequence", "GRU frequency regression, own clipping, StepLR, validation every 100 steps",
            "held_out", "val_rmse", val_var="val_mse"),
    Program("teacher_student", "distillation: teacher then student (two optimizers), KL + CE", "held_out",
            "student_val_error", val_var="val_loss", epoch_var="epoch", harm_abs=0.01),
    Program("finetune_frozen", "pre-train, then fine-tune with a frozen then unfrozen backbone", "held_out",
            "val_error", val_var="val_loss", epoch_var="epoch", harm_abs=0.01),
    Program("text_accum", "EmbeddingBag text classifier, bf16 autocast, gradient accumulation x4", "held_out",
            "val_error", val_var="val_loss", harm_abs=0.01),
    Program("gru_sequence_lightning", "Lightning twin of gru_sequence", "held_out", "val_rmse", lightning=True),
)

BY_NAME = {p.name: p for p in PROGRAMS}
