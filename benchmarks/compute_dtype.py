"""How far bfloat16 compute moves a model's logits from float32 compute (the bound tests/test_attention.py pins).

    python benchmarks/compute_dtype.py                        # SmolLM2-135M (zoo), a few prompts
    python benchmarks/compute_dtype.py --model=gemma3-270m

Loads the model once in float32, then runs the same left-padded prompts with compute_dtype=bfloat16 on the
float32 weights and on the weights cast to bfloat16; prints max |logit difference| over real tokens, the largest
float32 logit, and the share of tokens whose argmax is unchanged. A benchmark, not a test.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

PROMPTS = ["The capital of France is", "Ein kleiner Hund läuft über die Straße, weil",
           "def fibonacci(n):\n    if n < 2:\n        return n\n",
           "Переведите на английский: я люблю читать книги.", "Question: Is the sky green? Answer:"]
_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name or checkpoint.")


def main(argv: list[str]) -> None:
    del argv
    import jaxneurons as jn

    lm = jn.load_model(_MODEL.value, dtype="float32")
    ids, mask = lm.encode(PROMPTS, padding_side="left")
    real = np.asarray(mask).astype(bool)
    want = np.asarray(lm.logits(ids, mask))[real]
    print(f"{_MODEL.value}: {len(PROMPTS)} prompts, {real.sum()} real tokens, largest |logit| "
          f"{np.abs(want).max():.2f}")
    for weights in ("float32", "bfloat16"):
        params = lm.params if weights == "float32" else jax.tree.map(lambda x: x.astype(jnp.bfloat16), lm.params)
        got = np.asarray(dataclasses.replace(lm, params=params, compute_dtype=jnp.bfloat16).logits(ids, mask))[real]
        diff = np.abs(got - want)
        print(f"weights {weights}, compute bfloat16: max |logit difference| {diff.max():.3f} (mean {diff.mean():.4f}),"
              f" argmax unchanged on {(got.argmax(-1) == want.argmax(-1)).mean():.1%} of tokens")


if __name__ == "__main__":
    app.run(main)
