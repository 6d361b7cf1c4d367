"""Neuron sets per language from a file, for the passes that deactivate or boost them (steering, deactivation):
{lang: {layer: [neuron indices]}} as JSON, or the "neurons" of a LAPE selection (`lape_neurons.json`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from jaxneurons.models.decoder import Intervention
from jaxneurons.pipeline.errors import PipelineInputError

NeuronSets = dict[str, dict[int, list[int]]]


def read_sets(path: str, languages: Sequence[str], config, flag: str = "--steer_sets") -> NeuronSets:
    """The sets of `languages` in the file, each layer and neuron checked against the model's config; errors
    name the flag that gave the file."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PipelineInputError(f"{flag}={path}: cannot read it as JSON ({e})") from None
    if isinstance(raw, dict) and isinstance(raw.get("neurons"), dict):  # a LAPE selection and its facts
        raw = raw["neurons"]
    missing = [lang for lang in languages if lang not in raw]
    if missing:
        raise PipelineInputError(f"{flag}={path} has no neuron set for {', '.join(missing)}; it has {', '.join(raw)}")
    try:
        sets = {lang: {int(layer): [int(i) for i in index] for layer, index in raw[lang].items()} for lang in languages}
        for lang in languages:
            Intervention.zero(config, sets[lang])  # checks layers and indices against the model
    except (ValueError, TypeError, AttributeError) as e:
        raise PipelineInputError(f"{flag}={path}: {e}") from None
    return sets


def set_mask(neurons: dict[int, list[int]], config) -> np.ndarray:
    """bool [L, F]: the neurons of one language's set."""
    mask = np.zeros((config.num_layers, config.neurons_per_layer), bool)
    for layer, index in neurons.items():
        mask[layer, index] = True
    return mask
