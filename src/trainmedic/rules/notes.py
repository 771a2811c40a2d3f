"""The practitioner notes trainmedic is built from, by id: an English title and the gist of each.

The rule texts cite the notes ("practitioner note 004", "notes 000 and 002"), but the notes themselves
(five Chinese blog posts kept in the project's ``shared/seeds/``) do not ship with the package. So that a
citation is not a dead end for a user, ``trainmedic explain`` prints, under "Practitioner notes", the title
and the gist of every note a rule cites (:func:`cited_notes` finds the citations in the rule's text).
The gists are summaries written from the notes, in the notes' own terms, with their own numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    id: str  # "000" .. "004"
    title: str
    gist: str  # two to four sentences, plain text


NOTES: dict[str, Note] = {n.id: n for n in (
    Note("000", "Sparse count targets, and hunting a NaN",
         "Sparse counts (a shop selling 0-3 towels a day) give MSE tiny gradients; clamping negative "
         "predictions to 0 and rounding lose information: predict a distribution over the counts. For a "
         "NaN, check the outputs: a division or log that can reach 0; a (B, 1) prediction minus a (B,) "
         "label broadcasts to (B, B). lr 0.08 with clip 5 exploded; lr 0.02 with clip 2 trained."),
    Note("001", "Numerical stability, initialization, and the d2l house-price pipeline",
         "Gradients are products over layers: 1.5^100 explodes, 0.8^100 vanishes. Keep each layer's "
         "variance constant (Xavier init); tanh and ReLU are near the identity at 0, sigmoid is not. The "
         "d2l Kaggle house-price pipeline: standardize, one-hot, a linear net with Adam, judged by log-RMSE "
         "in 5-fold cross-validation."),
    Note("002", "The learning rate first; small data; the NaN checklist",
         "The learning rate is the first knob: try 0.1, divide by 10, lower it when the metric stalls. With "
         "~2,000 rows gradient boosting beats a deep net. NaN: dirty data or labels, division by 0, sqrt or "
         "log of values <= 0, softmax overflow, too high a rate; dirty rows found with batch_size=1. Overfit "
         "one repeated sample to tell a model bug from a tuning problem."),
    Note("003", "Abnormal loss values: data, learning rate, code",
         "Clean pandas data of NaN, None, NaT, empty strings and outliers: one NaN input makes the loss NaN. "
         "A CSV written with its index reads back with an extra `Unnamed: 0` column; float/int/long dtypes "
         "must match. Add eps against division by zero, use loss APIs as documented, and call "
         "optimizer.zero_grad() every step."),
    Note("004", "Shortcut features, and a loss that suddenly rebounds",
         "A model learns whatever separates the labels, not necessarily the feature you meant. A loss that "
         "rebounds mid-training means the steps became too large for where the weights are; a fixed decay "
         "rarely hits that moment. Checkpoint whenever the loss improves, stop at the rebound, lower the "
         "learning rate, resume, and keep the loss history with the checkpoint."),
)}

# "note 004", "practitioner notes 000, 002, 003", "notes 000 and 002", "note 001's", "Note 000:".
_CITATION = re.compile(r"\bnotes?\s+(\d{3}(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s*/\s*|\s*&\s*)\d{3})*)(?!\d)",
                       re.IGNORECASE)


def cited_notes(texts: Iterable[str]) -> list[Note]:
    """The notes the texts cite, in order of first citation; ids that are not a known note are ignored."""
    seen: dict[str, Note] = {}
    for text in texts:
        for match in _CITATION.finditer(text or ""):
            for note_id in re.findall(r"\d{3}", match.group(1)):
                if note_id in NOTES and note_id not in seen:
                    seen[note_id] = NOTES[note_id]
    return list(seen.values())
