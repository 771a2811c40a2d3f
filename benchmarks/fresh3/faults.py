"""The fault table of the third fresh set, read by `benchmarks/fresh/run_fresh.py --set fresh3`.

script -> [(fault name, operator, [(old, new), ...])]; each old text occurs exactly once in the script
(and, indented by 4 more, in its medic_ version when there is one). The operators are run_fresh.py's OPS
(what counts as detected, what as the cause). Written before any run under trainmedic, not tuned after.
"""

FAULTS = {
    "gnn_message": [
        ("lr_x300", "lr_x300", [("lr=0.01, weight_decay=5e-4", "lr=3.0, weight_decay=5e-4")]),
        ("shuffled_labels", "shuffled_labels",
         [("y = labels.clone()\n", "y = labels.clone()\ny[train_idx] = y[train_idx[torch.randperm(len(train_idx))]]\n")]),
        ("nan_row", "nan_row",
         [("x = 0.5 * centers[labels] + torch.randn(N, D, generator=g)\n",
           "x = 0.5 * centers[labels] + torch.randn(N, D, generator=g)\nx[5, 3] = float('nan')\n")]),
    ],
    "unet1d_denoise": [
        ("lr_x30", "lr_x30", [("lr=2e-3", "lr=0.06")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad()\n", "")]),
        ("nan_row", "nan_row",
         [("noisy_train, clean_train = make(1500, g)\n",
           "noisy_train, clean_train = make(1500, g)\nnoisy_train[7, 0, 40] = float('nan')\n")]),
    ],
    "mdn_mixture": [
        ("target_broadcast", "target_broadcast",
         [("return x.unsqueeze(1) / 10, y", "return x.unsqueeze(1) / 10, y.unsqueeze(1)")]),
        ("lr_x300", "lr_x300", [("lr=2e-3", "lr=0.6")]),
        ("nan_row", "nan_row",
         [("x_train, y_train = make(3000, g)\n", "x_train, y_train = make(3000, g)\nx_train[11, 0] = float('nan')\n")]),
    ],
    "infonce_views": [
        ("lr_x30", "lr_x30", [("lr=1e-3", "lr=0.03")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad()\n", "")]),
    ],
    "gaussnll_hetero": [
        ("target_broadcast", "target_broadcast",
         [("return mu.squeeze(-1), var.squeeze(-1)", "return mu, var")]),
        ("lr_x300", "lr_x300", [("lr=3e-3", "lr=0.9")]),
        ("nan_row", "nan_row",
         [("x_train, y_train = make(4000, g)\n", "x_train, y_train = make(4000, g)\nx_train[9, 4] = float('nan')\n")]),
    ],
    "gru_seq2seq": [
        ("shuffled_labels", "shuffled_labels",
         [("train_src, train_tgt = make(20000, g)\n",
           "train_src, train_tgt = make(20000, g)\ntrain_tgt = train_tgt[torch.randperm(len(train_tgt))]\n")]),
        ("lr_x30", "lr_x30", [("lr=3e-3", "lr=0.09")]),
        ("frozen_embedding", "frozen_embedding",
         [("model = Seq2Seq()\n", "model = Seq2Seq()\nmodel.enc_emb.weight.requires_grad = False\n")]),
    ],
    "sgdr_imbalanced": [
        ("lr_x30", "lr_x30", [("lr=0.05", "lr=1.5")]),
        ("no_zero_grad", "no_zero_grad", [("        optimizer.zero_grad(set_to_none=False)\n", "")]),
        ("sigmoid_into_logits_loss", "sigmoid_into_logits_loss",
         [("loss = F.cross_entropy(model(xb), yb)", "loss = F.cross_entropy(torch.sigmoid(model(xb)), yb)")]),
    ],
    "rprop_breast": [
        ("sigmoid_into_logits_loss", "sigmoid_into_logits_loss",
         [("loss = criterion(model(X_tr).squeeze(1), y_tr)",
           "loss = criterion(torch.sigmoid(model(X_tr).squeeze(1)), y_tr)")]),
        ("nan_row", "nan_row",
         [("y_tr, y_va, y_te = [torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va, y_te)]\n",
           "y_tr, y_va, y_te = [torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va, y_te)]\n"
           "X_tr[4, 12] = float('nan')\n")]),
        ("shuffled_labels", "shuffled_labels",
         [("y_tr, y_va, y_te = [torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va, y_te)]\n",
           "y_tr, y_va, y_te = [torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va, y_te)]\n"
           "y_tr = y_tr[torch.randperm(len(y_tr))]\n")]),
    ],
}

# scripts whose metric is an error rate (the harm test adds an absolute margin of 0.01 for them)
ERROR_RATE = {"gnn_message", "infonce_views", "gru_seq2seq", "sgdr_imbalanced", "rprop_breast"}
