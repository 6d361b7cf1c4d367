"""LAPE's selection of language-specific neurons (Tang et al., ACL 2024, identify.py), and its files.

From the activation probabilities p[l, j, i] = over_zero / n of neuron j of layer l in language i:
  1. normalise over languages, q = p / sum_i p (0 where a neuron never fires), and take the entropy
     H = -sum_i q log q (0 log 0 = 0);
  2. filter: the value at the filter_rate quantile of all p (the k-th smallest, k = round(filter_rate * |p|));
     a neuron whose p is not above it in any language gets H = inf (so a never-firing neuron, H = 0, is out);
  3. keep the round(top_rate * L * F) neurons of lowest H (ties: the lower flat index (layer, neuron) first;
     torch.topk leaves the order of ties unspecified);
  4. the bar: the value at the activation_bar_ratio quantile of all p; a kept neuron belongs to every language
     whose p is above the bar (none, one or several).
One divergence, on purpose: identify.py's `split(bincount(lang))` drops languages after the last one that got
a neuron; here every language is present, with empty layers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from jaxneurons.analysis.io import write_json_atomic

Neurons = dict[str, dict[int, list[int]]]  # language -> layer -> sorted neuron indices
NEURONS_FILE = "lape_neurons.json"


def kth_smallest(values: np.ndarray, rate: float, name: str) -> float:
    """torch.kthvalue(values, round(len * rate)): the k-th smallest (1-based)."""
    k = round(len(values) * rate)
    if not 1 <= k <= len(values):
        raise ValueError(f"{name}={rate} selects k={k} of {len(values)} values; it must give 1 <= k <= {len(values)}")
    return float(np.partition(values, k - 1)[k - 1])


def lape_entropy(probs_lfn: np.ndarray) -> np.ndarray:
    """[L, F] entropy of each neuron's activation probabilities normalised over the languages."""
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = probs_lfn / probs_lfn.sum(-1, keepdims=True)
    normed = np.nan_to_num(normed, nan=0.0)
    with np.errstate(divide="ignore"):
        log = np.where(normed > 0, np.log(np.where(normed > 0, normed, 1.0)), 0.0)
    return -np.sum(normed * log, axis=-1)


def lape_neurons(stats, top_rate: float = 0.01, filter_rate: float = 0.95, activation_bar_ratio: float = 0.95
                 ) -> Neurons:
    """{language: {layer: [neuron indices]}} selected by LAPE from `ActivationStats` (or probabilities
    [N, L, F] with `languages` as a pair (probs, languages)). Every language and layer is present."""
    for name, value in (("top_rate", top_rate), ("filter_rate", filter_rate),
                        ("activation_bar_ratio", activation_bar_ratio)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    probs_nlf, languages = (stats.probs, stats.languages) if hasattr(stats, "probs") else stats
    if len(languages) < 2:
        raise ValueError(f"LAPE compares languages: give at least 2, got {list(languages)}")
    probs = np.moveaxis(np.asarray(probs_nlf, np.float64), 0, -1)  # [L, F, N], identify.py's layout
    num_layers, width, _ = probs.shape
    entropy = lape_entropy(probs)
    flat = probs.reshape(-1)
    entropy[(probs > kth_smallest(flat, filter_rate, "filter_rate")).sum(-1) == 0] = np.inf
    count = round(entropy.size * top_rate)
    if count < 1:
        raise ValueError(f"top_rate={top_rate} of {entropy.size} neurons selects none; raise it")
    chosen = np.argsort(entropy.reshape(-1), kind="stable")[:count]
    bar = kth_smallest(flat, activation_bar_ratio, "activation_bar_ratio")
    above_cn = probs.reshape(-1, probs.shape[-1])[chosen] > bar
    out: Neurons = {}
    for i, lang in enumerate(languages):
        layer, neuron = np.divmod(np.sort(chosen[above_cn[:, i]]), width)
        out[str(lang)] = {l: [int(j) for j in neuron[layer == l]] for l in range(num_layers)}
    return out


def neuron_mask(neurons_of_lang: Mapping[int, Sequence[int]], num_layers: int, width: int) -> np.ndarray:
    """bool [L, F]: True at one language's neurons."""
    mask = np.zeros((num_layers, width), bool)
    for layer, indices in neurons_of_lang.items():
        mask[int(layer), np.asarray(indices, np.int64)] = True
    return mask


def save_lape_neurons(path: str | os.PathLike, neurons: Neurons, **facts) -> str:
    """lape_neurons.json: {"neurons": {lang: {layer: [...]}}, "languages": [...], **facts (settings, model)}."""
    return write_json_atomic(path, {**facts, "languages": list(neurons),
                                    "neurons": {lang: {str(l): v for l, v in per.items()}
                                                for lang, per in neurons.items()}})


def load_lape_neurons(path: str | os.PathLike) -> Neurons:
    """The neurons a `save_lape_neurons` file holds (layers as ints, languages in their saved order)."""
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    if "neurons" not in saved:
        raise ValueError(f"{path} is not a LAPE neurons file (no 'neurons' key); write it with save_lape_neurons")
    return {lang: {int(l): list(v) for l, v in saved["neurons"][lang].items()} for lang in saved["languages"]}


def read_lape_masks(path: str | os.PathLike, languages: Sequence[str]) -> Neurons:
    """LAPE's published `*.neuron.pth` (a list over languages of lists over layers of LongTensors; e.g. language
    order en, zh, fr, es, vi, id, ja for its LLaMA-2 files), read with torch.load(weights_only=True): no code in
    the file runs. `languages` names the list's entries in order (the file does not say)."""
    import torch

    masks = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(masks, (list, tuple)) or not all(isinstance(m, (list, tuple)) for m in masks):
        raise ValueError(f"{path} is not LAPE's format (a list over languages of lists over layers of LongTensors)")
    if len(masks) != len(languages):
        raise ValueError(f"{path} holds {len(masks)} languages but languages= names {len(languages)} "
                         f"({list(languages)}): give one name per entry, in the file's order")
    return {str(lang): {l: sorted(int(j) for j in torch.as_tensor(t).reshape(-1).tolist())
                        for l, t in enumerate(per_layer)} for lang, per_layer in zip(languages, masks)}


def write_lape_masks(path: str | os.PathLike, neurons: Neurons, num_layers: int | None = None) -> list[str]:
    """Write LAPE's `.neuron.pth` format (languages in the order of `neurons`); returns that order."""
    import torch

    num_layers = num_layers or 1 + max((l for per in neurons.values() for l in per), default=-1)
    masks = [[torch.tensor(sorted(per.get(l, [])), dtype=torch.long) for l in range(num_layers)]
             for per in neurons.values()]
    torch.save(masks, os.fspath(path))
    return list(neurons)
