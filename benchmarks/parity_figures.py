"""Prints the worst float32 differences from transformers per variant (the BUILD_NOTES parity table)."""
import numpy as np, tempfile, jaxneurons as jn
from tests import hf_reference
from tests.test_parity import _batch
for name in sorted(hf_reference.VARIANTS):
    m = hf_reference.make_model(name); d = tempfile.mkdtemp(); m.save_pretrained(d); lm = jn.load_model(d)
    worst = {}
    for side in ("right", "left"):
        ids, mask = _batch(lm.config.vocab_size, side); real = mask.astype(bool)
        rl, ra, rh = hf_reference.reference(m, ids, mask)
        worst["logits"] = max(worst.get("logits", 0), np.abs(np.asarray(lm.logits(ids, mask))[real] - rl[real]).max())
        for q, r in (("act", ra), ("ffn_hidden", rh)):
            a = np.asarray(lm.neurons(ids, mask, "every", q))
            worst[q] = max(worst.get(q, 0), np.abs(a[real] - r[real]).max())
    print(f"| {name} | {worst['logits']:.1e} | {worst['act']:.1e} | {worst['ffn_hidden']:.1e} | {np.abs(rl).max():.1f} |")
