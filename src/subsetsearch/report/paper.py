"""The paper's own numbers for each study, so a study report shows them beside ours.

Chitta, Alvarez, Haussmann, Farabet, *Training Data Subset Search with Ensemble Active Learning*
(arXiv 1905.12737). Numbers are exact as printed in its tables; the figures' numbers are those its
text states. Accuracies are top-1 %, on CIFAR-10 (C10), CIFAR-100 (C100) and ImageNet (IN).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CITATION", "PaperTable", "paper_tables"]

CITATION = (
    "Chitta, Alvarez, Haussmann, Farabet, Training Data Subset Search with Ensemble Active Learning (arXiv 1905.12737)"
)


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's tables (or the numbers a figure's text states), as printed."""

    source: str
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


_TABLE_I = PaperTable(
    "Table I",
    "Top-1 accuracy (%) of the subset models' ensemble (8 models on CIFAR, 4 on ImageNet), build up",
    ("", "C10 12.5%", "C10 25%", "C10 50%", "C100 20%", "C100 40%", "C100 80%", "IN 20%", "IN 40%", "IN 80%"),
    (
        ("Random", "87.65", "91.88", "94.30", "63.96", "74.18", "80.65", "63.51", "68.54", "71.66"),
        ("Entropy", "89.67", "94.29", "96.08", "65.83", "76.35", "81.94", "64.11", "69.64", "72.00"),
        ("Mutual information", "89.46", "94.34", "96.30", "66.11", "76.29", "82.02", "64.65", "70.18", "72.36"),
        ("Variation ratios", "89.86", "94.42", "95.76", "65.28", "76.27", "82.37", "64.39", "69.20", "72.78"),
        ("Error count", "87.30", "94.02", "96.08", "65.37", "76.13", "82.06", "58.13", "64.66", "72.10"),
        ("Full (100%)", "96.18", "", "", "81.86", "", "", "72.33", "", ""),
    ),
)

_FIGURE_3 = PaperTable(
    "Figure 3 (text)",
    "The schemes against subset size, as the paper's text describes its figure",
    ("scheme", "what the paper states"),
    (
        ("random", "declines steadily with size"),
        ("pretrain", "about as accurate as the full set"),
        ("compress", "very poor at small sizes, good near full size"),
        ("build up", "beats random by a wide margin; slightly beats full at C10 50% and IN 80%"),
    ),
    "Its build-up and random numbers are Table I's mutual-information and random rows.",
)

_TABLE_II = PaperTable(
    "Table II",
    "ImageNet: ensemble accuracy (%) on its own 40% training set and on the 60% it never saw",
    ("", "Single (1)", "Seeds (5)", "Ckpt (5)", "Ckpt (20)", "Combined (100)"),
    (
        ("Selected (trained on)", "58.10", "74.98", "72.59", "79.60", "83.78"),
        ("Unselected", "70.85", "82.55", "81.47", "84.02", "85.57"),
    ),
    "5 ResNet-18 runs on a 40% build-up subset; Seeds (5): best epoch of 5 runs; Ckpt (5): epochs 130:5:150 "
    "of one run; Ckpt (20): epochs 131-150; Combined (100): Ckpt (20) of 5 runs.",
)

_TABLE_III = PaperTable(
    "Table III",
    "ImageNet 80%: single subset model accuracy (%), variation ratios for the last +40%",
    ("Random", "Seeds (5)", "Ckpt (5)", "Ckpt (20)", "Combined (100)"),
    (("69.24", "69.97", "70.10", "70.18", "70.34"),),
)

_TABLE_IV = PaperTable(
    "Table IV",
    "Compress at 50%: accuracy (%) with the top-uncertainty share of the ranking set aside",
    ("", "None", "12.5%", "25%"),
    (("CIFAR-10", "95.77", "94.85", "93.81"), ("CIFAR-100", "75.89", "76.76", "76.41")),
    "Build up on CIFAR-100 at 50%: 79.37. ImageNet rule (build up, combined ensemble, 80%; leave out the ~4% "
    "on which every member predicts a different class): 70.34 -> 70.09. Conclusion: do not skip.",
)

_TABLE_V = PaperTable(
    "Table V",
    "ImageNet 80%: a subset chosen with ResNet-10 or ResNet-18, trained with other architectures (%)",
    ("", "R-18", "R-34", "R-50", "R-101", "DenseNet-121"),
    (
        ("Random-80", "69.24", "73.00", "75.15", "76.72", "74.59"),
        ("AL-R10-80", "70.31", "73.49", "75.91", "77.87", "75.28"),
        ("AL-R18-80", "70.34", "73.61", "76.18", "77.75", "75.42"),
        ("Full-100", "70.12", "73.68", "76.30", "77.99", "75.30"),
    ),
)

_FIGURE_4 = PaperTable(
    "Figure 4 (text)",
    "ImageNet: ResNet-18 checkpoints 131-150 on the 768k samples their ensemble left unselected",
    ("measure", "ResNet-18"),
    (
        ("consecutive checkpoints agree", "~58%"),
        ("all 20 checkpoints agree", "11.7%"),
        ("each checkpoint's accuracy there", "above 70%"),
    ),
    "ResNet-10 shows the same trend. The point: checkpoints are diverse, so checkpoint ensembles work.",
)

_FIGURE_5 = PaperTable(
    "Figure 5 (text)",
    "ImageNet 80%: validation error over training time",
    ("subsets", "what the paper states"),
    (("pretrain, compress, build up", "reach the full model's best validation error in 20% less time"),),
)

_TABLES: dict[str, tuple[PaperTable, ...]] = {
    "schemes": (_FIGURE_3, _TABLE_I),
    "functions": (_TABLE_I,),
    "ensembles": (_TABLE_II, _TABLE_III),
    "consensus": (_FIGURE_4,),
    "outliers": (_TABLE_IV,),
    "architecture": (_TABLE_V,),
    "curves": (_FIGURE_5,),
}


def paper_tables(study: str) -> tuple[PaperTable, ...]:
    """The paper's tables (and figure statements) a study reproduces; empty for an unknown study."""
    return _TABLES.get(study, ())
