"""TM2xx: wiring rules, checked once before training (``trainmedic.preflight``) or during the first step.

A wiring bug is decided before the first optimizer step: the loss compares the wrong shapes, a loss is fed
probabilities where it expects logits, parameters are never trained, the init shrinks the signal tenfold
per layer. None of them raises an exception; all of them waste the whole run. The detectors live in
:mod:`trainmedic.preflight` and :mod:`trainmedic.lr_find`; TM210 (unsafe-math) is documented with the
forensics in :mod:`trainmedic.rules.forensics`.
"""

from trainmedic.rules.registry import rule

NOTE_000 = "Practitioner note 000 (the (B,1) - (B,) broadcast trap; NaN hunting), ../shared/seeds/000_*.txt"
NOTE_001 = "Practitioner note 001 (variance through depth, Xavier init, sigmoid), ../shared/seeds/001_*.txt"
NOTE_002 = "Practitioner note 002 (learning rate first; overfit one repeated sample), ../shared/seeds/002_*.txt"
NOTE_003 = "Practitioner note 003 (dtype mismatches, misused loss APIs), ../shared/seeds/003_*.txt"

BROADCAST_TRAP = rule(
    "TM201",
    "broadcast-trap",
    "error",
    summary="The loss compared prediction and target after broadcasting them to a larger shape than either.",
    what="""
        The loss combined the prediction and the target after broadcasting them to a larger shape than
        either has. With a prediction of shape (64, 1) and a target of shape (64,), `pred - target` has
        shape (64, 64): every prediction is compared with every target, and the loss trains the model
        towards the batch mean. Nothing raises; the loss even goes down a little.
        """,
    why="""
        A final nn.Linear(..., 1) keeps a trailing dimension of size 1; labels loaded as a flat vector do
        not have it. nn.MSELoss warns about this; hand-written losses do not (practitioner note 000).
        Broadcasting inside the model (a bias add, `x - x.mean(0)`, masks, scaling by a scalar or a
        per-channel vector, `arange(T)[:, None] - arange(T)` for relative positions) is legitimate and
        is not reported: only an elementwise op between a prediction-derived and a target-derived tensor
        whose result is larger than both, through an implicitly added leading dimension, is.
        """,
    fix="""
        Make the shapes equal before the loss: `out = model(x).squeeze(-1)` or `y = y.view(-1, 1)`.
        If you do mean to compare every prediction with every target, write both dimensions explicitly
        (`out.view(-1, 1) - y.view(1, -1)`): explicit broadcasting is not reported.
        """,
    example="""
        loss = ((model(x) - y) ** 2).mean()          # (64,1) - (64,) -> (64,64)
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        """,
    references=(NOTE_000,),
)

PROBABILITIES_INTO_LOGIT_LOSS = rule(
    "TM202",
    "probabilities-into-logit-loss",
    "error",
    summary="A loss that expects logits got probabilities (or one that expects probabilities got logits).",
    what="""
        `nn.CrossEntropyLoss` / `F.cross_entropy` and `nn.BCEWithLogitsLoss` apply log-softmax or
        log-sigmoid themselves: fed the output of a softmax or a sigmoid, they squash it a second time.
        The loss can then never go below a floor far above zero, its gradients are tiny, and training
        stalls at a mediocre accuracy. The mirror image: `nn.NLLLoss` expects log-probabilities
        (`log_softmax`), `nn.BCELoss` expects probabilities; given raw logits the first trains towards
        unbounded outputs and the second raises or produces NaN.
        """,
    why="""
        Copying a Keras model (whose losses take probabilities by default) into PyTorch, or adding a
        softmax to the model "so that predictions are probabilities" and keeping CrossEntropyLoss
        (practitioner note 003: misused loss APIs).
        """,
    fix="""
        Return raw logits from the model and use CrossEntropyLoss / BCEWithLogitsLoss; apply softmax or
        sigmoid only when you need probabilities for a prediction. With NLLLoss, end the model with
        `log_softmax(dim=1)`.
        """,
    example="""
        model = nn.Sequential(nn.Linear(20, 4), nn.Softmax(dim=1))
        loss = nn.CrossEntropyLoss()(model(x), y)     # softmax applied twice
        model = nn.Sequential(nn.Linear(20, 4))       # logits in, CrossEntropyLoss does the rest
        """,
    references=(NOTE_003, "https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html"),
)

TARGET_MISMATCH = rule(
    "TM203",
    "target-mismatch",
    "error",
    summary="The target's dtype, shape or range does not fit the loss.",
    what="""
        The loss got a target it cannot use as intended: float class indices, a class index outside
        [0, C) (on a GPU this is a device-side assert that kills the process), one-hot rows where class
        indices are expected or the reverse, BCE targets outside [0, 1], a single-logit head with
        CrossEntropyLoss (the loss of one class is always 0), or a target whose dtype differs from the
        prediction's (float64 labels against float32 outputs fail in backward, integer labels in MSE).
        """,
    why="""
        Labels read from a CSV come as int64 or float64 whatever the model needs; classes numbered from 1
        instead of 0; labels one-hot encoded for Keras; {-1, 1} labels from an SVM recipe
        (practitioner note 003: int/float/long dtype mismatches).
        """,
    fix="""
        Class indices: `y.long()`, in [0, C), shape (B,). One-hot or soft labels: float, shape (B, C).
        BCE: float targets in [0, 1], same shape as the logits. Regression: `y.to(out.dtype)`, same shape
        as the prediction. A binary classifier with one logit uses BCEWithLogitsLoss, not CrossEntropyLoss.
        """,
    example="""
        loss = F.cross_entropy(logits, y.float())        # float class indices: error
        loss = F.cross_entropy(logits, y.long())
        loss = F.cross_entropy(logits, y - 1)            # classes were numbered 1..C
        """,
    references=(NOTE_003,),
)

ORPHAN_PARAMETERS = rule(
    "TM204",
    "orphan-parameters",
    "warning",
    summary="Some trainable parameters get no gradient, are not in the optimizer, or belong to another model.",
    what="""
        Parameters with `requires_grad=True` that are not being trained: after `backward()` their `.grad`
        is still None (they are not on the path from the inputs to the loss), or the optimizer does not
        hold them (they receive gradients that are never applied), or the optimizer holds tensors that
        are not this model's parameters at all (it was built on another instance, so the model never
        changes).
        """,
    why="""
        A layer defined in `__init__` but not used in `forward`; a layer kept in a plain Python list
        instead of `nn.ModuleList` (invisible to `model.parameters()`); an optimizer built before the
        model was re-created, copied or moved; parameters added after the optimizer was built; a branch
        computed under `torch.no_grad()` or through `.detach()`/`.item()`.
        """,
    fix="""
        Build the optimizer from the model you train, after it is complete:
        `torch.optim.Adam(model.parameters())`. Use `nn.ModuleList`/`nn.ModuleDict` for lists of layers.
        Freeze what you do not want to train with `p.requires_grad_(False)`; delete unused layers.
        """,
    example="""
        self.blocks = [nn.Linear(64, 64) for _ in range(4)]      # invisible to model.parameters()
        self.blocks = nn.ModuleList(nn.Linear(64, 64) for _ in range(4))
        """,
)

POOR_INIT = rule(
    "TM205",
    "poor-init",
    "warning",
    summary="At initialization the activations or gradients change >10x across depth, the outputs are far too large, "
            "or a layer's units start identical and can never differ.",
    what="""
        On one batch at the initial weights, the standard deviation of the outputs of the linear and
        convolution layers (or the norm of their weight gradients) changes by more than `poor_init_ratio`
        (10x) between the first and the last hidden layer of a chain (the heads, the layers the output
        is computed from without another layer in between, are left out: their scale is the loss's
        business; a wide-and-deep model or one with two heads has several). The signal that reaches the
        top (or the gradient that reaches the bottom) is a fraction of what it should be, and every layer learns at a
        different speed. During the run (every front end): the first training loss is more than
        `started_wrong_factor` (10x) the loss of a neutral output — log K for K classes, log 2 for a
        binary output, the mean squared target for a regression, read from the targets the loss saw: the
        network starts with outputs orders of magnitude too large. At the first step (every front end): most
        trained weight layers start with `std(w) * sqrt(fan_in)` above `poor_init_gain` (4): each multiplies
        the signal's scale by that much (sound inits keep it near 1; N(0, 1) weights give `sqrt(fan_in)`).
        At the first step (every front end): a trained layer starts with identical units (every row of its
        weight equal, e.g. all zero, and equal biases) and they receive identical gradients, so no step can
        ever tell them apart and the layer trains as a single unit (an all-zero or constant init). A zero
        last layer, a LoRA `B` matrix or a residual branch's zero output projection gets different
        gradients per unit and is not reported; embeddings and 1-D parameters are not judged.
        """,
    why="""
        Each layer multiplies the variance by `fan_in * Var(w) * gain`; unless the init keeps that product
        near 1, it shrinks or grows geometrically with depth (practitioner note 001: 0.8^100 and 1.5^100).
        Weights drawn with a fixed std (`normal_(0, 0.01)` or `normal_(0, 1)`), sigmoid/tanh between many
        layers, or inputs that are not standardized. `zeros_`/`constant_` on every parameter: units that
        start equal and see equal gradients stay equal (the symmetry is never broken).
        """,
    fix="""
        Use Xavier (`nn.init.xavier_uniform_`) for tanh/sigmoid and Kaiming (`nn.init.kaiming_normal_`,
        `nonlinearity="relu"`) for ReLU, or PyTorch's default init; add normalization layers
        (BatchNorm/LayerNorm) or residual connections; standardize the inputs.
        """,
    example="""
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)          # signal shrinks ~10x per layer
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        """,
    references=(NOTE_001, "Glorot & Bengio 2010; He et al. 2015"),
)

SATURATED_ACTIVATIONS = rule(
    "TM206",
    "saturated-activations",
    "warning",
    summary="Most inputs of a sigmoid or tanh are beyond ±5, where its gradient is almost zero.",
    what="""
        More than half of the values entering the named sigmoid/tanh lie beyond ±5. There the derivative
        is below 0.007 (sigmoid) or 0.0002 (tanh): the layer passes almost no gradient, and whatever is
        below it does not learn.
        """,
    why="""
        Unscaled inputs (raw prices, pixel values in 0..255), weights initialized too large, or a
        preceding layer whose outputs grew. Sigmoid is bad near its ends (practitioner note 001).
        """,
    fix="""
        Standardize the inputs, use Xavier init, put a normalization layer before the activation, or use
        ReLU/GELU in hidden layers.
        """,
    example="""
        x = torch.tensor(df.values)                    # prices in the 100,000s into a sigmoid layer
        x = (x - x.mean(0)) / x.std(0)
        """,
    references=(NOTE_001,),
)

DEAD_RELU = rule(
    "TM207",
    "dead-relu",
    "warning",
    summary="Most units of a ReLU layer are never positive on a whole batch.",
    what="""
        At least `dead_relu_share` (70 %) of the units of the named ReLU output zero for every sample of the
        batch (and every position, for convolutions). A unit that is never positive gets no gradient and
        can never recover: the layer is narrower than it looks.
        """,
    why="""
        Large negative biases, an init that is too large, inputs that are all positive and not centered,
        or (during training) a learning-rate spike that pushed the pre-activations negative.
        """,
    fix="""
        Standardize the inputs, use Kaiming init with zero biases, lower the learning rate, or use
        LeakyReLU/GELU.
        """,
    example="""
        nn.init.constant_(layer.bias, -3.0)            # most units start dead
        nn.ReLU()  ->  nn.LeakyReLU(0.01)
        """,
)

CANNOT_OVERFIT = rule(
    "TM208",
    "cannot-overfit-one-batch",
    "warning",
    summary="The model cannot fit a single repeated batch: the model, the loss or the optimizer is wired wrong.",
    what="""
        A copy of the model was trained on one small batch, repeated, with Adam at two learning rates for
        a short budget. Any working model/loss pair memorizes a handful of samples; here the loss did not
        fall by 90 %. That rules out the hyper-parameters: the wiring is wrong (practitioner note 002's
        sanity check: copy one sample 100,000 times; if the net cannot fit it, it is the net).
        """,
    why="""
        A loss that ignores the prediction, a detached output, a broadcast trap (TM201), a head that
        cannot reach the targets (TM211), frozen layers, labels shuffled independently of the inputs,
        or a loss with a large irreducible floor (then the check does not apply).
        """,
    fix="""
        Read the other TM2xx findings first. Check that the loss depends on the model's output and that
        `loss.backward()` reaches the parameters; print the loss on the repeated batch yourself.
        """,
    example="""
        batch = next(iter(loader))
        for _ in range(200):                           # loss must go to ~0
            opt.zero_grad(); loss = loss_fn(model(batch[0]), batch[1]); loss.backward(); opt.step()
        """,
    references=(NOTE_002, "Karpathy, A Recipe for Training Neural Networks (2019): overfit one batch"),
)

LR_OUT_OF_RANGE = rule(
    "TM209",
    "lr-out-of-range",
    "warning",
    summary="The learning rate lies past the divergence point, or far below the useful range, of an LR range test.",
    what="""
        An LR range test (`trainmedic.lr_find`) raised the learning rate exponentially on copies of the
        model and optimizer and recorded the smoothed loss. The configured learning rate is at or beyond
        the rate where that loss started to diverge, or more than 100x below the suggested rate, where
        training crawls.
        """,
    why="""
        The learning rate is the first knob (practitioner note 002): too large and the loss oscillates or
        explodes (note 000: lr 0.08 exploded, 0.02 trained), too small and nothing moves. A rate copied
        from another optimizer (SGD rates are ~10x Adam's) or another batch size.
        """,
    fix="""
        Use the suggested rate (`result.suggestion`), or anything between a third of it and it; then
        decay on a plateau (TM308).
        """,
    example="""
        res = trainmedic.lr_find(model, optimizer, loss_fn, loader)
        for g in optimizer.param_groups: g["lr"] = res.suggestion
        """,
    references=(NOTE_002, "Smith, Cyclical Learning Rates for Training Neural Networks (2017)"),
)

OUTPUT_ACTIVATION_MISMATCH = rule(
    "TM211",
    "output-activation-mismatch",
    "error",
    summary="The model's final activation cannot produce the values of the targets.",
    what="""
        The head ends in an activation whose range excludes part of the targets: a ReLU/softplus/exp
        head (>= 0) on targets with negative values, a sigmoid (0..1) or tanh (-1..1) head on targets
        outside that interval. Those targets can never be reached; the loss has a floor, and gradients
        through a ReLU head stop entirely once its inputs go negative.
        """,
    why="""
        A classification head reused for regression, a ReLU added "so that predictions are non-negative"
        on standardized (zero-mean) targets, or targets that were not scaled the way the head assumes.
        Practitioner note 000: a ReLU head on non-negative counts underfits and loses information.
        """,
    fix="""
        End a regression model with a plain nn.Linear; scale the targets to the head's range if you keep
        the activation; for non-negative counts predict a log-rate and use PoissonNLLLoss.
        """,
    example="""
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())  # y standardized
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
        """,
    references=(NOTE_000,),
)

# TM210 (unsafe-math) belongs to this family; its detector is forensic, so it is documented there.
from trainmedic.rules import forensics as _forensics  # noqa: E402,F401
