"""Loading the public datasets from the Hugging Face hub (``source="hub"``), via ``datasets``.

Only XNLI, PAWS-X and XCOPA have public hub copies in the expected form; mParaRel and MzsRE raise
:class:`HubUnavailableError`. The rows returned here feed the same example builders as local files.
"""

from __future__ import annotations

XNLI_HUB = "facebook/xnli"
PAWSX_HUB = "google-research-datasets/paws-x"
XCOPA_HUB = "cambridgeltl/xcopa"
XNLI_LABEL_NAMES = ("entailment", "neutral", "contradiction")  # facebook/xnli ClassLabel order
HUB_SPLITS = {"dev": "validation", "val": "validation", "test": "test"}


class HubUnavailableError(NotImplementedError):
    """The dataset cannot be loaded from the hub (no public copy, no ``datasets``, or offline)."""


def _load_dataset(path: str, config: str, split: str):
    """``datasets.load_dataset(path, config, split=...)`` with clear errors."""
    try:
        import datasets
    except ImportError as e:
        raise HubUnavailableError(
            "source='hub' needs the Hugging Face datasets library: pip install datasets "
            "(or use source='local' with --data_dir)"
        ) from e
    try:
        return datasets.load_dataset(path, config, split=HUB_SPLITS[split])
    except Exception as e:  # offline, unknown config, hub error: name the dataset
        raise HubUnavailableError(
            f"could not load {path!r} config {config!r} split {split!r} from the Hugging Face hub "
            f"({type(e).__name__}: {e}); check the network or use source='local' with --data_dir"
        ) from e


def load_xnli_rows(lang: str, split: str) -> list[tuple[str, str, str]]:
    """XNLI (premise, hypothesis, label name) rows of one language from ``facebook/xnli``."""
    ds = _load_dataset(XNLI_HUB, lang, split)
    return [(r["premise"].strip(), r["hypothesis"].strip(), XNLI_LABEL_NAMES[r["label"]]) for r in ds]


def load_pawsx_rows(lang: str, split: str) -> list[tuple[str, str, str]]:
    """PAWS-X (sentence1, sentence2, "1"/"0") rows of one language from the hub copy."""
    ds = _load_dataset(PAWSX_HUB, lang, split)
    return [(r["sentence1"].strip(), r["sentence2"].strip(), str(r["label"])) for r in ds]


def load_xcopa_records(lang: str, split: str) -> list[dict]:
    """XCOPA records (premise, choice1, choice2, question, label, idx) of one language."""
    ds = _load_dataset(XCOPA_HUB, lang, split)
    return [dict(r) for r in ds]
