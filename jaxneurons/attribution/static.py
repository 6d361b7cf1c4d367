"""The paper's two static scores at the last token (Geva et al. 2022), one matrix product per layer.

contribution c(l, j) = |m(l, j)| * ||v(l, j)||_2        v(l, j): neuron j's row of layer l's down projection
effective    e(l, j) = m(l, j) * (E[t] . v(l, j))         E: the unembedding, t: the gold answer's first token
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxneurons.models.config import ModelConfig


def down_rows(params) -> jax.Array:
    """v: [L, F, H], the output direction of every neuron in the residual stream."""
    return params["layers"]["mlp"]["down"]["kernel"]


def unembedding_rows(config: ModelConfig, params, token_ids_b) -> jax.Array:
    """E[t]: [B, H] for each example's target token."""
    if config.tie_embeddings:
        return params["embed"]["embedding"][token_ids_b]
    return params["lm_head"]["kernel"][:, token_ids_b].T


@jax.jit
def contribution(m_blf, down_lfh):
    norms_lf = jnp.linalg.norm(down_lfh.astype(jnp.float32), axis=-1)
    return jnp.abs(m_blf.astype(jnp.float32)) * norms_lf[None]


@jax.jit
def effective_score(m_blf, down_lfh, target_rows_bh):
    projection_blf = jnp.einsum("bh,lfh->blf", target_rows_bh.astype(jnp.float32), down_lfh.astype(jnp.float32))
    return m_blf.astype(jnp.float32) * projection_blf


def static_scores(config: ModelConfig, params, m_blf, target_ids_b) -> dict[str, jax.Array]:
    """{"contribution": [B, L, F], "effective": [B, L, F]} from the down-projection inputs m at the last token."""
    down = down_rows(params)
    return {"contribution": contribution(m_blf, down),
            "effective": effective_score(m_blf, down, unembedding_rows(config, params, jnp.asarray(target_ids_b)))}
