"""The fault table of the second fresh set, read by `benchmarks/fresh/run_fresh.py --set fresh2`.

script -> [(fault name, operator, [(old, new), ...])]; each old text occurs exactly once in the script
(and, indented by 4 more, in its medic_ version when there is one). The operators are run_fresh.py's OPS
(what counts as detected, what as the cause). Written before any run under trainmedic, not tuned after.
"""

FAULTS = {
    "lstm_packed": [
        ("target_broadcast", "target_broadcast",
         [("return self.out(h[-1]).squeeze(-1)", "return self.out(h[-1])")]),
        ("lr_x300", "lr_x300", [("lr=3e-3", "lr=0.9")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad()\n", "")]),
    ],
    "transformer_mask": [
        ("shuffled_labels", "shuffled_labels",
         [("x_train, y_train = make(1600, g)\n",
           "x_train, y_train = make(1600, g)\ny_train = y_train[torch.randperm(len(y_train))]\n")]),
        ("lr_x30", "lr_x30", [("lr=1e-3", "lr=0.03")]),
    ],
    "triplet_digits": [
        ("shuffled_labels", "shuffled_labels",
         [("x_train, y_train = X[train_idx], labels[train_idx]\n",
           "x_train, y_train = X[train_idx], labels[train_idx]\ny_train = y_train[torch.randperm(len(y_train))]\n")]),
        ("lr_x300", "lr_x300", [("lr=0.1)", "lr=30.0)")]),
        ("no_zero_grad", "no_zero_grad", [("    optimizer.zero_grad()\n", "")]),
    ],
    "multilabel_pos_weight": [
        ("sigmoid_into_logits_loss", "sigmoid_into_logits_loss",
         [("loss = criterion(model(xb), yb)", "loss = criterion(torch.sigmoid(model(xb)), yb)")]),
        ("nan_row", "nan_row",
         [("y_tr = Y[train_set.indices]\n", "y_tr = Y[train_set.indices]\nX[train_set.indices[5], 7] = float('nan')\n")]),
        ("lr_x300", "lr_x300", [("lr=2e-3", "lr=0.6")]),
    ],
    "quantile_diabetes": [
        ("lr_x300", "lr_x300", [("lr=0.01)", "lr=3.0)")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad()\n", "")]),
        ("nan_row", "nan_row",
         [("x_train, y_train, x_val, y_val = X[tr], y[tr], X[va], y[va]\n",
           "x_train, y_train, x_val, y_val = X[tr], y[tr], X[va], y[va]\nx_train[5, 2] = float('nan')\n")]),
    ],
    "tied_lm": [
        ("lr_x30", "lr_x30", [("lr=0.1, momentum=0.9", "lr=3.0, momentum=0.9")]),
        ("frozen_embedding", "frozen_embedding",
         [("model = NGramLM()\n", "model = NGramLM()\nmodel.emb.weight.requires_grad = False\n")]),
        ("shuffled_labels", "shuffled_labels",
         [("train_text, val_text = generate(30000, g), generate(5000, g)\n",
           "train_text, val_text = generate(30000, g), generate(5000, g)\n"
           "train_text = train_text[torch.randperm(len(train_text))]\n")]),
    ],
    "plateau_earlystop": [
        ("lr_x30", "lr_x30", [("lr=0.05", "lr=1.5")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad()\n", "")]),
        ("shuffled_labels", "shuffled_labels",
         [("TensorDataset(X[tr], y[tr])", "TensorDataset(X[tr], y[tr][torch.randperm(len(tr))])")]),
    ],
    "ordinal_coral": [
        ("sigmoid_into_logits_loss", "sigmoid_into_logits_loss",
         [("loss = F.binary_cross_entropy_with_logits(logits, lb)",
           "loss = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), lb)")]),
        ("lr_x300", "lr_x300", [("lr=2e-3", "lr=0.6")]),
    ],
}

# scripts whose metric is an error rate (the harm test adds an absolute margin of 0.01 for them)
ERROR_RATE = {"transformer_mask", "triplet_digits", "plateau_earlystop"}
