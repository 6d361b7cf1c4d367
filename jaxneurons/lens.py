"""The logit lens (nostalgebraist 2020; Wendler et al. 2024, "Do Llamas work in English?") and a neuron's
vocabulary: what the residual stream and an FFN neuron's output direction say in the model's own vocabulary.

`logit_lens` reads the residual stream leaving each layer (`resid_post`) and passes it through the decoder's own
final norm and unembedding (`models.decoder`: the `Norm` at params["final_norm"], `unembedding`, `unembed`
with Gemma's final soft cap), so the last layer gives exactly the model's output distribution. It never builds
[B, T, L, V]: the probabilities are computed under one jit over chunks of (row, token, layer) points that hold
`pipeline.scoring.LOGITS_CHUNK_BYTES` of logits, keeping only each point's top k and the tokens asked for.
`plot_logit_lens` draws the per-language figure; `neuron_tokens` reads one neuron's row of the down projection
through the final norm's scale and the unembedding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.lm import LanguageModel
from jaxneurons.models import layers as L
from jaxneurons.models.config import ModelConfig
from jaxneurons.models.decoder import Norm, Record, unembed, unembedding

if TYPE_CHECKING:  # matplotlib loads on use (tests/test_imports.py)
    from matplotlib.figure import Figure

LENS_AT = ("every", "last")  # where logit_lens reads: every token, or each row's last real token


@dataclasses.dataclass(frozen=True)
class LogitLens:
    """What each recorded layer's residual stream predicts (read-only numpy arrays).

    At every token (at="every"): top_ids, top_probs [B, T, L, k] (largest first), token_probs [B, T, L, C]
    for the C `tokens` asked for (None when none were); at each row's last real token (at="last", or
    `last()`): [B, L, k] and [B, L, C]. L runs over `layers`, in order.
    input_ids, mask [B, T]: what ran (padding positions are computed too: read them through `mask`);
    str_tokens: each row's tokens as text, top_strs: top_ids as text (object array), both None without a
    tokenizer.
    """

    top_ids: np.ndarray
    top_probs: np.ndarray
    token_probs: np.ndarray | None
    tokens: tuple[int, ...]
    layers: tuple[int, ...]
    at: str
    input_ids: np.ndarray
    mask: np.ndarray
    str_tokens: list | None = None
    top_strs: np.ndarray | None = None

    def last(self) -> "LogitLens":
        """The same lens at each row's last real token only ([B, L, ...] arrays); itself when at="last"."""
        if self.at == "last":
            return self
        rows, index = np.arange(self.mask.shape[0]), np.asarray(L.last_token_index(self.mask))
        pick = lambda a: None if a is None else _frozen(a[rows, index])  # noqa: E731
        return dataclasses.replace(self, top_ids=pick(self.top_ids), top_probs=pick(self.top_probs),
                                   token_probs=pick(self.token_probs), top_strs=pick(self.top_strs), at="last")

    def probs_of(self, token_ids) -> np.ndarray:
        """token_probs of one token per row ([B] ids, or one id for every row): [B, T, L], or [B, L] at="last"."""
        if self.token_probs is None:
            raise ValueError("this lens has no token_probs; run logit_lens(..., tokens=[...]) with the ids")
        wanted = np.broadcast_to(np.asarray(token_ids, np.int64), (self.mask.shape[0],))
        missing = sorted({int(t) for t in wanted} - set(self.tokens))
        if missing:
            raise ValueError(f"token ids {missing} are not among the lens's tokens {list(self.tokens)}; "
                             "run logit_lens(..., tokens=[...]) with them")
        column = np.asarray([self.tokens.index(int(t)) for t in wanted])
        return np.take_along_axis(self.token_probs, column.reshape(-1, *[1] * (self.token_probs.ndim - 1)),
                                  axis=-1)[..., 0]


def logit_lens(lm: LanguageModel, texts, layers: Sequence[int] | None = None, top_k: int = 10,
               tokens: Sequence[int] | None = None, *, mask=None, at: str = "every") -> LogitLens:
    """The logit lens of `texts`: each layer's `resid_post` through the final norm and the unembedding.

    texts: a text, a list of texts (right-padded, special tokens added) or token ids [B, T] / [T] with an
    optional `mask`; layers: layer indices, negative ones from the end (None: all); top_k: how many of each
    point's most probable tokens to keep; tokens: ids whose probabilities to keep at every point (e.g. the
    answer in each language); at: "every" token or each row's "last" real token. The last layer's
    distribution is the model's own (Gemma's final soft cap included). Returns a `LogitLens`.
    """
    if at not in LENS_AT:
        raise ValueError(f"logit_lens: unknown at={at!r}; choose from {LENS_AT}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"logit_lens: top_k must be a positive int, got {top_k!r}")
    c = lm.config
    ids, mask = _ids_and_mask(lm, texts, mask)
    chosen = _layers(c, layers)
    wanted = _token_ids(c, tokens)
    out = lm.forward(ids, mask, record=Record(("resid_post",), at, chosen), logits="none")
    resid = out.activations["resid_post"]  # [B, T, L, D] or [B, L, D]
    probs, top_ids, token_probs = _lens(c, lm.params, resid.reshape(-1, resid.shape[-1]),
                                        jnp.asarray(wanted, jnp.int32), top_k=min(int(top_k), c.vocab_size),
                                        dtype=lm.compute_dtype, chunk=_chunk_rows(c.vocab_size))
    shape = resid.shape[:-1]
    top_ids = _frozen(np.asarray(top_ids).reshape(*shape, -1))
    has_tokenizer = lm.tokenizer is not None
    return LogitLens(
        top_ids=top_ids, top_probs=_frozen(np.asarray(probs).reshape(*shape, -1)),
        token_probs=_frozen(np.asarray(token_probs).reshape(*shape, -1)) if wanted else None,
        tokens=tuple(wanted), layers=chosen, at=at, input_ids=_frozen(ids), mask=_frozen(mask),
        str_tokens=lm.str_tokens(ids) if has_tokenizer else None,
        top_strs=_frozen(_decode(lm, top_ids)) if has_tokenizer else None)


@functools.partial(jax.jit, static_argnames=("config", "top_k", "dtype", "chunk"))
def _lens(config: ModelConfig, params, resid_nd: jax.Array, tokens_c: jax.Array, *, top_k: int, dtype,
          chunk: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(top-k probabilities [N, k], their ids [N, k], probabilities of tokens_c [N, C]) of N residual-stream
    vectors, `chunk` of them unembedded at a time."""
    final_norm = Norm(config.norm, config.norm_eps, params["final_norm"]["scale"].dtype)
    weight = unembedding(config, params)

    def one(h_d):
        logits_v = unembed(config, final_norm.apply({"params": params["final_norm"]}, h_d[None]), weight, dtype)[0]
        logprob_v = jax.nn.log_softmax(logits_v)
        top_logprob, top_ids = jax.lax.top_k(logprob_v, top_k)
        return jnp.exp(top_logprob), top_ids, jnp.exp(logprob_v[tokens_c])

    return jax.lax.map(one, resid_nd, batch_size=chunk)


def _chunk_rows(vocab_size: int) -> int:
    """How many points' float32 logits fit in the scoring pipeline's LOGITS_CHUNK_BYTES."""
    from jaxneurons.pipeline.scoring import LOGITS_CHUNK_BYTES  # the pipeline loads on use

    return max(1, LOGITS_CHUNK_BYTES // (4 * vocab_size))


def _ids_and_mask(lm: LanguageModel, texts, mask) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(texts, str) or (isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], str)):
        if mask is not None:
            raise ValueError("logit_lens: mask= goes with token ids, not with texts (they are padded here)")
        return lm.encode([texts] if isinstance(texts, str) else list(texts))
    ids = np.asarray(texts, np.int32)
    ids = ids[None] if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.size == 0:
        raise ValueError(f"logit_lens: texts must be texts or token ids [B, T], got an array of shape {ids.shape}")
    mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int32).reshape(ids.shape)
    return ids, mask


def _layers(config: ModelConfig, layers: Sequence[int] | None) -> tuple[int, ...]:
    n = config.num_layers
    if layers is None:
        return tuple(range(n))
    chosen = tuple(int(l) for l in ([layers] if isinstance(layers, (int, np.integer)) else layers))
    bad = [l for l in chosen if not -n <= l < n]
    if bad or not chosen:
        raise ValueError(f"logit_lens: layers {bad or list(chosen)} are not layers of this {n}-layer model "
                         f"(use 0..{n - 1}, or -1 for the last)")
    return tuple(l % n for l in chosen)


def _token_ids(config: ModelConfig, tokens) -> list[int]:
    wanted = [] if tokens is None else list(tokens)
    bad = [t for t in wanted if isinstance(t, bool) or not isinstance(t, (int, np.integer))
           or not 0 <= t < config.vocab_size]
    if bad:
        raise ValueError(f"logit_lens: tokens must be token ids in 0..{config.vocab_size - 1}, got {bad} "
                         "(a text's id: lm.token_id(' Paris'))")
    return [int(t) for t in wanted]


def _decode(lm: LanguageModel, ids: np.ndarray) -> np.ndarray:
    """ids as their texts (an object array of the same shape), each distinct id decoded once."""
    unique, inverse = np.unique(ids, return_inverse=True)
    texts = np.empty(len(unique), object)
    texts[:] = lm.str_tokens(unique)
    return texts[inverse.reshape(ids.shape)]


def _frozen(a) -> np.ndarray:
    """A read-only copy (never the caller's array frozen in place)."""
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


# --- the figure -------------------------------------------------------------------------------------------

def plot_logit_lens(lenses: Mapping[str, LogitLens], answers: Mapping[str, Sequence[int] | int], *,
                    english: str = "en", vocab: Mapping[str, Collection[int]] | None = None,
                    title: str = "Logit lens") -> "Figure":
    """Per language, at each row's last real token: (left) the mean probability of the answer token per layer;
    (right) the mean share of the top-k tokens that are the prompt language's tokens (solid) and English
    tokens (dashed), for every language but English.

    lenses: {language: the logit lens of its prompts} (any at; `tokens` must include its answers);
    answers: {language: the answer's (first) token id per row, or one id for all rows}.
    "English" and "the prompt's language" are sets of token ids: vocab[english] and vocab[language] when
    given, else the tokens of each language's own prompts (lens.input_ids where mask) and answers. A token
    in both sets (shared subwords, names, digits, punctuation) counts for neither, so the two shares are of
    tokens that tell the languages apart; the rest of the top k is neither. `english` names the English key
    in vocab (or lenses). Returns the Figure (Agg canvas).
    """
    from jaxneurons.analysis.figures import _new_figure  # matplotlib loads on use

    missing = sorted(set(lenses) - set(answers))
    if missing:
        raise ValueError(f"plot_logit_lens: answers has no entry for {missing}; give one token id per row")
    last = {lang: lens.last() for lang, lens in lenses.items()}
    sets = _token_sets(last, answers, english, vocab)
    fig, (probs_ax, share_ax) = _new_figure(2)
    for i, (lang, lens) in enumerate(last.items()):
        color = f"C{i % 10}"
        probs_ax.plot(lens.layers, lens.probs_of(answers[lang]).mean(0), color=color, marker=".", label=lang)
        if lang != english:
            own, eng = language_shares(lens.top_ids, sets[lang] - sets[english], sets[english] - sets[lang])
            share_ax.plot(lens.layers, own, color=color, marker=".", label=lang)
            share_ax.plot(lens.layers, eng, color=color, linestyle="--", label=f"{lang}: {english}")
    probs_ax.set(title="P(answer token), last position", xlabel="layer", ylabel="mean probability")
    share_ax.set(title=f"top-k tokens: prompt language (solid) vs {english} (dashed)", xlabel="layer",
                 ylabel="mean share of the top k")
    for ax in (probs_ax, share_ax):
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def language_shares(top_ids_blk: np.ndarray, own: Collection[int], english: Collection[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mean over rows of the share of each layer's top-k ids [B, L, k] in `own` and in `english`: ([L], [L])."""
    top = np.asarray(top_ids_blk)
    in_own = np.isin(top, np.fromiter(own, np.int64, len(own)))
    in_english = np.isin(top, np.fromiter(english, np.int64, len(english)))
    return in_own.mean(axis=(0, 2)), in_english.mean(axis=(0, 2))


def _token_sets(last: Mapping[str, LogitLens], answers, english: str, vocab) -> dict[str, set[int]]:
    """{language: its token ids}: vocab's, or each lens's prompt tokens and answers."""
    if vocab is not None:
        missing = sorted(({english} | set(last)) - set(vocab))
        if missing:
            raise ValueError(f"plot_logit_lens: vocab has no token set for {missing}")
        return {lang: {int(t) for t in ids} for lang, ids in vocab.items()}
    if english not in last:
        raise ValueError(f"plot_logit_lens: no lens for English ({english!r}) to define English tokens; "
                         f"pass english=<its key> or vocab={{language: token ids}}")
    return {lang: {int(t) for t in lens.input_ids[lens.mask != 0]} | {int(t) for t in np.ravel(answers[lang])}
            for lang, lens in last.items()}


# --- a neuron's vocabulary --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NeuronTokens:
    """The tokens a neuron's output direction promotes (largest direct logit first) and suppresses (most
    negative first): ids, values and texts (None without a tokenizer), k of each."""

    layer: int
    neuron: int
    promoted_ids: np.ndarray
    promoted_values: np.ndarray
    suppressed_ids: np.ndarray
    suppressed_values: np.ndarray
    promoted: list | None = None
    suppressed: list | None = None

    def _repr_html_(self) -> str:
        def cells(ids, values, texts):
            names = texts if texts is not None else [str(i) for i in ids]
            return "".join(f"<td>{_escape(n)!s} ({v:+.3f})</td>" for n, v in zip(names, values))
        return (f"<b>layer {self.layer}, neuron {self.neuron}</b><table>"
                f"<tr><th>promotes</th>{cells(self.promoted_ids, self.promoted_values, self.promoted)}</tr>"
                f"<tr><th>suppresses</th>{cells(self.suppressed_ids, self.suppressed_values, self.suppressed)}"
                "</tr></table>")


def neuron_tokens(lm: LanguageModel, layer: int, neuron: int, k: int = 10) -> NeuronTokens:
    """The k tokens neuron `neuron` of layer `layer` promotes and the k it suppresses: its row of the down
    projection (what one unit of its activation adds to the residual stream) times the final norm's scale
    times the unembedding, the usual "direct logit" reading.

    The final norm's scale is applied: w (RMSNorm), 1 + w (Gemma's RMSNorm), and for LayerNorm the direction
    is centred, then scaled by w (LayerNorm's bias adds nothing to a direction). Its 1/RMS (or 1/std)
    factor depends on the whole residual stream, is positive and the same for every token, so it is left
    out: the values are logits per unit of (normalized) activation, their order exact. Gemma's final soft
    cap, a monotone squashing of total logits, is not applied to these contributions; Cohere's logit_scale is.
    """
    c = lm.config
    if not 0 <= layer < c.num_layers or not 0 <= neuron < c.neurons_per_layer:
        raise ValueError(f"neuron_tokens: (layer {layer}, neuron {neuron}) is outside this model's "
                         f"{c.num_layers} layers x {c.neurons_per_layer} neurons")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= c.vocab_size:
        raise ValueError(f"neuron_tokens: k must be an int in 1..{c.vocab_size}, got {k!r}")
    logits_v = np.asarray(direct_logits(c, lm.params, lm.params["layers"]["mlp"]["down"]["kernel"][layer, neuron]))
    order = np.argsort(-logits_v, kind="stable")
    top, bottom = order[:k], order[::-1][:k]
    texts = (lambda ids: lm.str_tokens(ids)) if lm.tokenizer is not None else (lambda ids: None)
    return NeuronTokens(int(layer), int(neuron), _frozen(top), _frozen(logits_v[top]), _frozen(bottom),
                        _frozen(logits_v[bottom]), texts(top), texts(bottom))


def direct_logits(config: ModelConfig, params, direction_d) -> jax.Array:
    """Float32 [V]: a residual-stream direction [D] through the final norm's scale (not its 1/RMS: see
    `neuron_tokens`) and the unembedding, without the soft cap."""
    d = jnp.asarray(direction_d, jnp.float32)
    norm = params["final_norm"]
    if config.norm in ("layer", "layer_nobias"):
        d = (d - d.mean()) * norm["scale"].astype(jnp.float32)
    else:  # normalize with a unit 1/RMS factor: d * w, or d * (1 + w) for Gemma
        d = L.normalize(config.norm, d, norm["scale"], None, config.norm_eps, inv_rms=jnp.ones((1,), jnp.float32))
    logits = jnp.matmul(d, unembedding(config, params).astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    return logits * config.logit_scale  # Cohere's logit scale (1 elsewhere)


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
