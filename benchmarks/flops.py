"""Matrix-product FLOPs of the measured work, counted from the model's shape (2 FLOPs per multiply-add).

Integrated gradients differentiates with respect to activations only (parameters frozen on both sides),
so a backward pass costs about one forward: the gradient of x @ W is dy @ W^T, the same product again
(the usual "backward = 2x forward" counts the weight gradients too, which neither side computes).
"""

from __future__ import annotations


def layer_token(config, context: int) -> float:
    """One token through one layer attending to `context` keys: projections, MLP, scores and weighted sum."""
    h, f, d = config.hidden_size, config.intermediate_size, config.head_dim
    projections = h * d * (2 * config.num_heads + 2 * config.num_kv_heads)
    mlp = (3 if config.gated_mlp else 2) * h * f
    return 2.0 * (projections + mlp) + 4.0 * context * config.num_heads * d


def forward_per_token(config) -> float:
    """Projections and MLP of one token through every layer (attention scores aside): the categorisation's
    useful work per real token."""
    return config.num_layers * layer_token(config, 0)


def prompt_forward(config, length: int) -> float:
    """The whole prompt through every layer, causal attention (position t attends to t + 1 keys)."""
    return sum(config.num_layers * layer_token(config, t + 1) for t in range(length))


def logits(config) -> float:
    return 2.0 * config.hidden_size * config.vocab_size


def replay_ig(config, length: int, steps: int, layer_counts: list[int], zeroed: bool = True) -> float:
    """Last-token replay IG of one prompt: the prompt once, then per alpha and per entry of layer_counts
    (the layers one replay computes) forward and backward of the last token, logits at the last position
    (forward and backward); with `zeroed`, one forward per target layer for the zeroed probability
    (jaxneurons reports it; the PyTorch replay does not compute it)."""
    token = layer_token(config, length)
    per_alpha = sum(2 * n * token + 2 * logits(config) for n in layer_counts)
    extra = sum(n * token + logits(config) for n in layer_counts) if zeroed else 0.0
    return prompt_forward(config, length) + steps * per_alpha + extra


def naive_ig(config, length: int, steps: int, layers: list[int]) -> float:
    """Knowledge-Neurons IG of one prompt: per target layer l and alpha, the whole prompt forward through
    every layer and backward through layers l..L-1 (every position), logits at the last position only."""
    forward = prompt_forward(config, length)
    per_layer = [forward + forward * (config.num_layers - l) / config.num_layers + 2 * logits(config)
                 for l in layers]
    return forward + steps * sum(per_layer)


def replay_layer_counts(config, layers: list[int]) -> dict[str, list[int]]:
    """Layers computed per replay of each target layer: jaxneurons' grouped plan (`ig.replay_plan`), v0.1's
    design (every target layer replayed all layers, the lower ones discarded) and the triangular minimum
    (target l needs layers l..L-1)."""
    from jaxneurons.attribution.ig import replay_plan

    L = config.num_layers
    ours = {l: L - start for start, group in replay_plan(L, layers) for l in group}
    return {"jaxneurons": [ours[l] for l in layers], "v0.1": [L] * len(layers),
            "triangular": [L - l for l in layers]}
