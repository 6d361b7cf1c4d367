"""A TransformerLens-style walkthrough on the zoo model smollm2-135m: cache activations by name, patch the
residual stream from one prompt into another, export to Hugging Face and reload it in transformers.

Run from the repository root:  python docs/walkthrough.py > docs/walkthrough_output.txt
"""

from __future__ import annotations

import tempfile

import numpy as np

import jaxneurons as jn

CLEAN = "The capital of France is the city of"
CORRUPT = "The capital of Italy is the city of"
ANSWER, WRONG = " Paris", " Rome"


def main() -> None:
    lm = jn.load_model("smollm2-135m", dtype="float32")
    print(f"model: {lm.source}  layers {lm.config.num_layers}  hidden {lm.config.hidden_size}  "
          f"neurons/layer {lm.config.intermediate_size}")
    answer, wrong = lm.token_id(ANSWER), lm.token_id(WRONG)
    print(f"tokens: {lm.str_tokens(CLEAN)}")

    logits, cache = lm.run_with_cache(CLEAN, names=("resid_pre", "attn_out", "act", "attn_pattern"),
                                      layers=(0, 10, 29))
    print("run_with_cache (batch, token, recorded layer, ...):")
    for name, value in cache.items():
        print(f"  {name:12s} {tuple(value.shape)}")
    print(f"  logits       {tuple(logits.shape)}")

    clean_ids, _ = lm.encode([CLEAN])
    corrupt_ids, _ = lm.encode([CORRUPT])
    assert clean_ids.shape == corrupt_ids.shape, "the two prompts must align token by token"
    token = [i for i, (a, b) in enumerate(zip(clean_ids[0], corrupt_ids[0])) if a != b][0]
    print(f"prompts differ at token {token}: {lm.str_tokens(clean_ids[0, token:token + 1])} vs "
          f"{lm.str_tokens(corrupt_ids[0, token:token + 1])}")

    def answer_margin(ids, patches=()):
        last = np.asarray(lm.logits(ids, patches=patches))[0, -1]
        return last[answer] - last[wrong]

    _, clean_cache = lm.run_with_cache(clean_ids, names=("resid_pre",))
    print(f"logit({ANSWER!r}) - logit({WRONG!r}): clean {answer_margin(clean_ids):+.3f}, "
          f"corrupt {answer_margin(corrupt_ids):+.3f}")
    print(f"patching resid_pre at token {token} from the clean prompt into the corrupt one:")
    for layer in (0, 5, 10, 15, 20, 25, 29):
        value = clean_cache["resid_pre"][0, token, layer]
        patch = jn.Patch.at("resid_pre", value, layer=layer, row=0, token=token)
        print(f"  layer {layer:2d}: {answer_margin(corrupt_ids, [patch]):+.3f}")

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as directory:
        jn.export_hf(lm, directory)
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        with torch.no_grad():
            theirs = model(input_ids=torch.tensor(clean_ids, dtype=torch.long)).logits.numpy()
    ours = np.asarray(lm.logits(clean_ids))
    print(f"export_hf -> transformers.{type(model).__name__}: max |logit difference| "
          f"{np.abs(ours - theirs).max():.2e} over {ours.size} logits")


if __name__ == "__main__":
    main()
