"""Generation under interventions: `generate` prefills each batch of left-padded prompts once, then decodes one
token a step against a key/value cache (`KVCache`), the whole loop one compiled program (`lax.while_loop`),
compiled once per (batch, prompt bucket, max_new_tokens) shape. Greedy or sampled (temperature, top-p, seed).

>>> lm = jn.load_model("gemma3-270m")
>>> off = jn.Intervention.zero(lm, {5: [12, 40], 6: [7]})
>>> out = lm.generate(["The capital of France is"], max_new_tokens=8, intervention=off)
>>> out.texts, out.token_ids, out.lengths
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons import distributed
from jaxneurons.lm import pad_rows
from jaxneurons.models.decoder import Decoder, Intervention, KVCache, Record
from jaxneurons.models.output import forward

POSITIONS = ("all", "generated", "last_prompt")  # where an intervention acts: every prompt and generated token,
# generated tokens only, or the prompt's last token only (where the analysis passes read and deactivate)
PROMPT_BUCKET = 16  # prompts are left-padded to a multiple of this many tokens (fewer compiled shapes)


@dataclasses.dataclass
class Generation:
    """What `generate` returned, rows in the order of the prompts.

    texts: the new text of each row (special tokens skipped), cut before the first stop string;
    token_ids: [B, N] the generated ids, the pad id after a row's stop;
    lengths: [B] generated tokens per row, up to and including the token that stopped it (EOS, a stop token,
    or the token that completed a stop string);
    stopped: [B] whether the row stopped before max_new_tokens.
    """

    prompts: list
    texts: list[str]
    token_ids: np.ndarray
    lengths: np.ndarray
    stopped: np.ndarray
    settings: dict

    def __len__(self) -> int:
        return len(self.texts)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame({"prompt": self.prompts, "text": self.texts, "tokens": self.lengths,
                             "stopped": self.stopped})


def generate(lm, prompts, *, max_new_tokens: int, intervention: Intervention | None = None,
             positions: str = "all", temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             stop: Sequence[str | int] | None = None, batch_size: int = 16, attention_mask=None, mesh=None,
             progress: bool = False) -> Generation:
    """Continue each prompt by up to max_new_tokens tokens, under `intervention` (`Intervention.zero`, ...).

    prompts: texts (tokenized with the model's special tokens), or token ids [B, T] with attention_mask
    (1 for tokens; any padding side); intervention: scale and shift [1 or B, L, F] (its `where` is ignored:
    `positions` says where it acts: "all" prompt and generated tokens, "generated" only, or "last_prompt", the
    prompt's last token only, as the deactivation pass's teacher-forced scores);
    temperature 0: greedy (the argmax, first index on ties, as transformers); else sampling with the given
    temperature and nucleus top_p, reproducible by seed; stop: strings (the text is cut before the first one)
    or token ids, beside the model's EOS; batch_size: prompts decoded together (the last batch is padded to
    it); mesh: split the batch over its `data` axis and the weights over `fsdp`, like the analysis passes.
    """
    rows = _prompt_rows(lm, prompts, attention_mask)
    stop_ids, stop_texts = _stop(lm, stop)
    scale, shift = _check(lm, rows, max_new_tokens, intervention, positions, temperature, top_p, batch_size)
    placement = distributed.placement(mesh)
    distributed.require_process_local(placement.mesh, "generation")
    batch_size = placement.round_batch_size(min(batch_size, len(rows)))
    order = np.argsort([len(r) for r in rows], kind="stable")  # similar lengths decode together
    tokens = np.zeros((len(rows), max_new_tokens), np.int32)
    lengths, stopped = np.zeros(len(rows), np.int32), np.zeros(len(rows), bool)
    decoder = lm.decoder(Record(kv=True), logits="last")  # the prefill and every step
    key = jax.random.key(seed)
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc="generate", unit="batch"):
        picked = order[start:start + batch_size]
        filled = [rows[i] for i in picked] + [rows[picked[-1]]] * (batch_size - len(picked))  # missing: the last
        ids, mask = pad_rows(filled, lm.pad_id, "left", PROMPT_BUCKET)
        arrays, shared = {"ids": ids, "mask": mask}, {}
        if scale is not None:  # per-prompt rows split over the batch, one shared row replicated
            change = {"scale": _rows(scale, picked, batch_size), "shift": _rows(shift, picked, batch_size)}
            (arrays if scale.shape[0] > 1 else shared).update(change)
        with placement.context():
            out = _generate(decoder, placement.params(lm.params), {**placement.batch(arrays),
                                                                   **placement.replicate(shared)},
                            jnp.asarray(stop_ids, jnp.int32), lm.pad_id, jax.random.fold_in(key, start),
                            jnp.float32(max(temperature, 1e-6)), jnp.float32(top_p), max_new_tokens=max_new_tokens,
                            sampling=temperature > 0, positions=positions)
        new, count, done = (np.asarray(x)[:len(picked)] for x in out)
        tokens[picked], lengths[picked], stopped[picked] = new, count, done
    texts = []
    for i in range(len(rows)):
        text, cut = _cut(lm, tokens[i, :lengths[i]], stop_texts)
        if cut is not None:
            tokens[i, cut:], lengths[i], stopped[i] = lm.pad_id, cut, True
        texts.append(text)
    settings = dict(max_new_tokens=max_new_tokens, positions=positions, temperature=temperature, top_p=top_p,
                    seed=seed, stop=list(stop or []), intervention=intervention is not None)
    shown = list(prompts) if _are_texts(prompts) else [list(r) for r in rows]
    return Generation(shown, texts, tokens, lengths, stopped, settings)


@functools.partial(jax.jit, static_argnames=("decoder", "max_new_tokens", "sampling", "positions"))
def _generate(decoder: Decoder, params, arrays: dict, stop_ids, pad_id, key, temperature, top_p, *,
              max_new_tokens: int, sampling: bool, positions: str):
    """(tokens [B, N], lengths [B], stopped [B]): the prompt prefilled, then one token a step."""
    ids, mask = arrays["ids"], arrays["mask"]
    b = ids.shape[0]
    changed = "scale" in arrays
    prompt_where = {"all": jnp.ones((1, 1), bool), "generated": jnp.zeros((1, 1), bool),
                    "last_prompt": (jnp.arange(ids.shape[1]) == ids.shape[1] - 1)[None]}[positions]
    prompt_iv = Intervention(arrays["scale"], arrays["shift"], prompt_where) if changed else None
    step_iv = Intervention(arrays["scale"], arrays["shift"], jnp.full((1, 1), positions != "last_prompt")) \
        if changed else None
    out = forward(decoder, params, ids, mask, intervention=prompt_iv)
    first = _choose(out.logits, key, 0, temperature, top_p, sampling)
    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    done = jnp.isin(first, stop_ids)
    carry = (jnp.int32(1), out.cache.grow(max_new_tokens - 1), tokens, done, jnp.ones(b, jnp.int32), first)

    def more(carry):
        i, _, _, done, _, _ = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def one_token(carry):
        i, cache, tokens, done, lengths, last = carry
        out = forward(decoder, params, last[:, None], jnp.ones((b, 1), jnp.int32), intervention=step_iv, cache=cache)
        new = jnp.where(done, pad_id, _choose(out.logits, key, i, temperature, top_p, sampling))
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, new[:, None], i, axis=1)
        lengths = jnp.where(done, lengths, i + 1)
        return i + 1, cache.append(out.cache), tokens, done | jnp.isin(new, stop_ids), lengths, new

    _, _, tokens, done, lengths, _ = jax.lax.while_loop(more, one_token, carry)
    return tokens, lengths, done


def _choose(logits_bv, key, i, temperature, top_p, sampling: bool):
    """The next token of each row: the argmax, or a sample of softmax(logits / temperature) within the nucleus
    top_p (the most likely tokens whose probabilities, before the last one, sum to less than top_p)."""
    if not sampling:
        return jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    logits = logits_bv / temperature
    ranked = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(ranked, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    floor = jnp.min(jnp.where(before < top_p, ranked, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits >= floor, logits, -jnp.inf)
    return jax.random.categorical(jax.random.fold_in(key, i), logits, axis=-1).astype(jnp.int32)


def _are_texts(prompts) -> bool:
    return isinstance(prompts, str) or (isinstance(prompts, (list, tuple)) and bool(prompts)
                                        and all(isinstance(p, str) for p in prompts))


def _prompt_rows(lm, prompts, attention_mask) -> list[list[int]]:
    """Each prompt's token ids (real tokens only)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if _are_texts(prompts):
        return [list(lm._tokenizer()(p)["input_ids"]) for p in prompts]
    ids = np.asarray(prompts)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("prompts: give a list of texts, or token ids [B, T] (ints) with attention_mask")
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask).reshape(ids.shape)
    rows = [list(row[m != 0]) for row, m in zip(ids, mask)]
    if any(not r for r in rows):
        raise ValueError("prompts: a row has no token (its attention_mask is all 0)")
    return rows


def _stop(lm, stop) -> tuple[list[int], list[str]]:
    """(stop token ids: EOS and the given ids, stop strings)."""
    stop = [stop] if isinstance(stop, (str, int)) else list(stop or [])
    eos = lm.config.eos_token_id
    eos = [*(eos if isinstance(eos, (list, tuple)) else [eos]), getattr(lm.tokenizer, "eos_token_id", None)]
    eos = [e for e in eos if e is not None]
    for s in stop:
        if not isinstance(s, (str, int, np.integer)) or isinstance(s, bool) or s == "":
            raise ValueError(f"stop: {s!r} is neither a non-empty string nor a token id")
    ids = sorted({int(e) for e in eos} | {int(s) for s in stop if not isinstance(s, str)})
    return ids or [-1], [s for s in stop if isinstance(s, str)]


def _check(lm, rows, max_new_tokens, intervention, positions, temperature, top_p, batch_size):
    """Every argument checked before anything compiles; (scale, shift) [1 or B, L, F] of the intervention."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    bad = [i for i, r in enumerate(rows) if not all(0 <= t < lm.config.vocab_size for t in r)]
    if bad:
        raise ValueError(f"prompt {bad[0]} has a token id outside the vocabulary (0..{lm.config.vocab_size - 1})")
    context = _max_context(lm)
    longest = max(len(r) for r in rows)
    if context is not None and longest + max_new_tokens > context:
        row = int(np.argmax([len(r) for r in rows]))
        raise ValueError(f"prompt {row} ({longest} tokens) plus max_new_tokens={max_new_tokens} exceeds the model's "
                         f"context of {context} tokens; shorten it or lower max_new_tokens")
    if intervention is None:
        return None, None
    want = (lm.config.num_layers, lm.config.neurons_per_layer)
    scale, shift = np.asarray(intervention.scale), np.asarray(intervention.shift)
    for name, value in (("scale", scale), ("shift", shift)):
        if value.ndim != 3 or value.shape[1:] != want or value.shape[0] not in (1, len(rows)):
            raise ValueError(f"intervention {name} has shape {value.shape}; generate needs [1 or {len(rows)} "
                             f"(one per prompt), {want[0]} layers, {want[1]} neurons]")
    return scale, shift


def _max_context(lm) -> int | None:
    """The model's context in tokens, as its source states it; None when unknown (no source, or gone)."""
    from jaxneurons.loading import read_max_context

    try:
        return read_max_context(lm.source) if lm.source else None
    except (OSError, ValueError):
        return None


def _rows(value_rlf: np.ndarray, picked: np.ndarray, batch_size: int) -> np.ndarray:
    """The intervention rows of the picked prompts (one shared row stays one), padded to batch_size."""
    if value_rlf.shape[0] == 1:
        return value_rlf
    chosen = value_rlf[picked]
    return np.concatenate([chosen, np.repeat(chosen[-1:], batch_size - len(picked), axis=0)])


def _cut(lm, ids: np.ndarray, stop_texts: Sequence[str]) -> tuple[str, int | None]:
    """(the text of ids cut before the first stop string, the token count up to the one that completed it)."""
    decode = (lambda t: lm.tokenizer.decode([int(i) for i in t], skip_special_tokens=True)) \
        if lm.tokenizer is not None else (lambda t: "")
    text = decode(ids)
    hits = [text.find(s) for s in stop_texts if s in text]
    if not hits:
        return text, None
    n = next(n for n in range(1, len(ids) + 1) if any(s in decode(ids[:n]) for s in stop_texts))
    return text[:min(hits)], n
