"""The jitted per-batch steps: counts and scores leave the device, and of the activations only what the grouping
controls need (`analysis.controls.control_readout`: activated bits at tau = 0 and unit vectors, in float16).

Both steps are compiled once per (rows, length, continuation length) shape; the plan's length buckets keep
those few. Thresholds are an array argument, so a new sweep does not recompile.
"""

from __future__ import annotations

import functools

import jax

from jaxneurons.analysis import OverlapState, example_statistics, overlap_update
from jaxneurons.analysis.controls import control_readout
from jaxneurons.models.decoder import Decoder
from jaxneurons.models.output import forward
from jaxneurons.pipeline.scoring import hidden_scores, sum_continuation, token_scores


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def sharing_step(decoder: Decoder, params, overlap: OverlapState, inputs: dict, first_tokens_rs: jax.Array,
                 valid_b: jax.Array, thresholds_k: jax.Array, num_languages: int) -> tuple[OverlapState, dict]:
    """Forward a batch, categorize its neurons, fold them into the overlap state and score the answers.

    inputs: the arrays of a `batching.Inputs` over R = B * N rows (example-major); first_tokens_rs: the
    first token of each slot's continuation, scored from the logits at the prompt's last token.
    Returns the new overlap state and {category_counts [B, K, L, 4], activated [B, K, N, L],
    logprob [R], greedy [R] (the forward's own continuation), first_logprob [R, S], first_greedy [R, S],
    active_bits [B, N, L, ceil(F / 8)] (activated at tau = 0, packed), unit [B, N, L, F] (float16)}.
    """
    hidden, activations = forward_rows(decoder, params, inputs)
    rows, num_layers, neurons = activations["act"].shape
    acts_bnlf = activations["act"].reshape(rows // num_languages, num_languages, num_layers, neurons)
    counts_bklc, activated_bknl = example_statistics(acts_bnlf, thresholds_k)
    out = {"category_counts": counts_bklc, "activated": activated_bknl, **control_readout(acts_bnlf),
           **hidden_scores(decoder.config, params, hidden, inputs["targets_rj"], inputs["target_mask_rj"],
                           first_tokens_rs, decoder.dtype)}
    return overlap_update(overlap, acts_bnlf, thresholds_k, valid_b), out


@functools.partial(jax.jit, static_argnames=("decoder",))
def scoring_step(decoder: Decoder, params, inputs: dict) -> tuple[jax.Array, jax.Array]:
    """No neurons: (summed log-prob [R], all-argmax [R]) of each row's continuation."""
    hidden, _ = forward_rows(decoder, params, inputs)
    logprob, is_argmax = token_scores(decoder.config, params, hidden, inputs["targets_rj"][..., None], decoder.dtype)
    return sum_continuation(logprob[..., 0], is_argmax[..., 0], inputs["target_mask_rj"])


def forward_rows(decoder: Decoder, params, inputs: dict) -> tuple[jax.Array, dict]:
    """Run a forward and return per row: the decoder's logits output at its tokens read ([R, J, V]; [R, J, D]
    final hidden states with logits="hidden"), recorded neurons [R, L, F].

    A packed forward (with "row_slot_r") computes them per (bin, segment); each row takes its own slot.
    """
    out = forward(decoder, params, inputs["ids_rt"], inputs["mask_rt"], record_index=inputs["record_index_r"],
                  logit_index=inputs["logit_index_rj"])
    if "row_slot_r" not in inputs:
        return out.logits, out.activations
    slot_r, (bins, segments) = inputs["row_slot_r"], inputs["record_index_r"].shape
    logits = out.logits.reshape(bins * segments, -1, out.logits.shape[-1])[slot_r]
    activations = {name: value.reshape(bins * segments, *value.shape[2:])[slot_r]
                   for name, value in out.activations.items()}
    return logits, activations
