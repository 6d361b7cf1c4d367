"""Helpers shared by the test files: the tiny random llama with its byte tokenizer, and direct references.

Plain functions and constants (the pytest fixtures are in conftest.py): the subprocess halves of test_distributed
and test_launcher_checks import them too.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import jaxneurons as jn

LANGS = ["en", "de", "ru"]
FIXED_LENGTH = 512  # the direct references pad (right) to one length: one compilation, causal = no effect


def byte_tokenizer():
    """Byte-level tokenizer with a BOS; " true" and " false" are single tokens, the rest one token a byte."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update({"<pad>": 256, "<s>": 257})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 257)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>")
    hf.add_tokens([AddedToken(" true", normalized=False), AddedToken(" false", normalized=False)])
    return hf


def tiny_lm(seed: int = 0, moe: bool = False) -> jn.LanguageModel:
    """A 2-layer random llama (hidden 32, 24 neurons a layer) with the byte tokenizer, in float32; moe: a
    Mixtral instead, 4 experts of 6 neurons (24 a layer), 2 picked per token."""
    experts = dict(family="mixtral", intermediate_size=6, num_experts=4, experts_per_token=2) if moe else {}
    config = jn.ModelConfig(**{**dict(family="llama", vocab_size=264, hidden_size=32, intermediate_size=24,
                                      num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=True,
                                      pad_token_id=256), **experts})
    ids = jnp.ones((1, 4), jnp.int32)
    shapes = jax.eval_shape(jn.Decoder(config).init, jax.random.key(seed), ids, ids)["params"]
    rng = np.random.default_rng(seed)  # std 0.15: activations of both signs, logits that differ by token
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, 0.15, x.shape) if x.ndim == 2
                                                else 1.0 + 0.2 * rng.normal(size=x.shape), jnp.float32), shapes)
    return jn.LanguageModel(config, params, byte_tokenizer(), jnp.float32, "tiny-mixtral" if moe else "tiny-llama")


def split_config(config_class, kwargs: dict):
    """(config_class built from the kwargs that name its fields, the other kwargs)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return (config_class(**{k: v for k, v in kwargs.items() if k in names}),
            {k: v for k, v in kwargs.items() if k not in names})


def direct_acts(lm, example, languages, at="last") -> np.ndarray:
    """[N, L, F] neurons of each prompt alone, read with `lm.neurons` (one prompt per call, no padding)."""
    # One row per call; right padding to a fixed length only so that every call shares one compiled shape.
    rows = []
    for lang in languages:
        ids, mask = lm.encode([example.prompts[lang]], pad_to_multiple_of=FIXED_LENGTH)
        rows.append(np.asarray(lm.neurons(ids, mask, at=at))[0])
    return np.stack(rows)
