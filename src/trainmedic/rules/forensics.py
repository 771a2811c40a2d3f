"""Forensic rules: what trainmedic finds when it replays a step whose loss or gradient was non-finite.

TM210 names the op and the module that produced the first non-finite value; TM313 names the rows of the
batch that make the loss non-finite. Both run on trigger only (``trainmedic.heal.forensics``), never on
the hot path of a healthy run.
"""

from trainmedic.rules.registry import rule

NOTE_000 = "Practitioner note 000 (NaN hunting: check outputs, add eps to log/div), ../shared/seeds/000_*.txt"
NOTE_002 = "Practitioner note 002 (the NaN checklist; batch_size=1 hunt for dirty samples), ../shared/seeds/002_*.txt"

UNSAFE_MATH = rule(
    "TM210",
    "unsafe-math",
    "error",
    summary="A log, sqrt, pow, exp or division reached a value outside its domain and produced NaN/Inf.",
    what="""
        The offending batch was replayed on the current weights with every op watched. The named op, in
        the named module (or in the loss), is the first that turned finite inputs into a non-finite
        output: `log` of a value <= 0, `sqrt` of a negative value, a division by zero, `exp` of a value
        above ~88 in float32, `pow` of a negative base with a fractional exponent. When the forward is
        finite and the gradient is not, the backward of the named op is where the NaN/Inf first appeared
        (e.g. the derivative of `sqrt` at 0 is infinite). The evidence gives the range of the op's input
        and how many values were outside the op's domain.
        """,
    why="""
        A prediction that reaches 0 fed to a log (`log(model(x))` on a probability or a rate), a standard
        deviation of a constant group, a normalization by a count that can be 0, a softmax written by hand
        without subtracting the maximum, NaN already in the data (then the first op touching it is named,
        and TM313 names the rows) (practitioner notes 000 and 002: add eps to log/div/sqrt).
        """,
    fix="""
        Keep the argument inside the domain: `torch.log(p.clamp_min(1e-8))`, `torch.sqrt(v + 1e-8)`,
        `x / (n + 1e-8)`; use the numerically stable forms (`F.log_softmax`, `F.logsigmoid`,
        `F.binary_cross_entropy_with_logits`, `torch.logsumexp`, `PoissonNLLLoss(log_input=True)`).
        """,
    example="""
        loss = -(y * torch.log(model(x))).mean()        # log of a prediction that reached 0 -> -inf
        loss = -(y * torch.log(model(x).clamp_min(1e-8))).mean()
        """,
    references=(NOTE_000, NOTE_002, "torch.autograd.detect_anomaly"),
)

DIRTY_SAMPLES = rule(
    "TM313",
    "dirty-samples",
    "error",
    summary="Bisecting the offending batch isolated the rows that make the loss non-finite.",
    what="""
        The batch whose loss was NaN/Inf was split in halves, and the halves whose loss stayed non-finite
        were split again, until single rows remained: those rows alone make the loss non-finite (k bad
        rows in a batch of B take about 2k log2(B) forward passes, counted in the evidence). They are
        named by dataset index when the batch carries its indices (`batch=(x, y, idx)`, see
        `trainmedic.WithIndex`) or, under `trainmedic run`, when the batch came from a DataLoader over a
        map-style dataset (read off its batch sampler); otherwise by position in the batch and a content
        hash, and the message says so. In heal mode they are quarantined: batches that contain them are
        recomputed without them (under `trainmedic run`, skipped), and
        `trainmedic.QuarantineSampler` leaves them out of later epochs. Rows are blamed only when the
        batch itself holds NaN/Inf or the op that broke (TM210) took a value derived from the target
        alone (`log(y)` with a label of 0); when it broke on the prediction (`log(pred)` with pred <= 0)
        or inside the model, the fault is the model's or the loss's and no row is quarantined.
        """,
    why="""
        Real data is dirty. Practitioner note 002 found its NaN by setting batch_size=1 and shuffle=False
        and walking the data set sample by sample, deleting dirty rows as it went: an empty field read as
        NaN, a label of Inf, a value that makes a log or a division blow up for that row only.
        """,
    fix="""
        Inspect and clean the named rows (`trainmedic check-data` finds most of them before training:
        TM101, TM102). Quarantine is a repair of the run, not of the data set.
        """,
    example="""
        ds = trainmedic.WithIndex(dataset)             # batches become (x, y, idx)
        medic = trainmedic.Medic(model, opt, mode="heal", loss_fn=loss_fn)
        ...  medic.step(loss, batch=(x, y, idx))
        """,
    references=(NOTE_002,),
)
