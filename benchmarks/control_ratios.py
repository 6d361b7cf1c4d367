"""The deactivation controls' achieved ratios to all-shared on a zoo model, the previous |m| draw beside the new one.

    PYTHONPATH=. python benchmarks/control_ratios.py --model=smollm2-135m --task=builtin_facts \
        --languages=en,de,es,fr,ru,th,tr,vi,zh

Runs the deactivation pass's own clean forward (`interventions.example_neurons`, its batches) and draws every
control with the pass's `off_mask`, plus the |m| draw of --previous (the carry-down draw before issue 26, read
from git), for each of --seeds; prints per control the count, mean |m| and contribution-mass ratios (control /
all-shared, pooled over examples, languages and layers), mean and [min, max] over the seeds. No intervened
forward: a measurement of the draws for BUILD_NOTES.md, not a test.
"""

from __future__ import annotations

import subprocess
import time
import types

import numpy as np
from absl import app, flags

_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name, checkpoint directory, .gguf file or hub id.")
_TASK = flags.DEFINE_string("task", "builtin_facts", "A built-in task (no data directory needed).")
_LANGUAGES = flags.DEFINE_list("languages", ["en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh"], "Languages.")
_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Only the first N items (default: all).", lower_bound=1)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the drawn controls.")
_PREVIOUS = flags.DEFINE_string("previous", "a213081", "Commit whose attribution/matched.py holds the previous draw.")
CONTROLS = ("previous magnitude", "magnitude", "top_magnitude", "mass", "random", "specific_count",
            "partial_shared_count")


def previous_draw(commit: str):
    """The magnitude_matched of jaxneurons/attribution/matched.py at commit, as a module function."""
    source = subprocess.run(["git", "show", f"{commit}:jaxneurons/attribution/matched.py"], capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("previous_matched")
    exec(compile(source, f"{commit}:matched.py", "exec"), module.__dict__)
    return module.magnitude_matched


def main(argv: list[str]) -> None:
    del argv
    import jaxneurons as jn
    from jaxneurons.analysis import ALL_SHARED, PARTIAL_SHARED, SPECIFIC
    from jaxneurons.models.decoder import Record
    from jaxneurons.pipeline import interventions as iv
    from jaxneurons.pipeline.batching import plan_batches, tokenize_examples

    start, previous = time.perf_counter(), previous_draw(_PREVIOUS.value)
    lm, langs, seeds = jn.load_model(_MODEL.value), _LANGUAGES.value, [int(s) for s in _SEEDS.value]
    task = jn.tasks.get_task(_TASK.value)
    examples = task.load(langs, num_examples=_EXAMPLES.value, prompt_format="paper").examples
    plan = plan_batches(tokenize_examples(lm.tokenizer, examples, langs, task.scoring), 8, "last", "right", lm.pad_id)
    decoder = lm.decoder(Record(("act", "ffn_hidden"), "last"), logits="none")
    sums = {}  # (control, seed) -> [neurons, summed |m|, summed contribution]
    for index in range(plan.num_batches):
        batch = plan.batch(index)
        valid = np.asarray(batch.valid_b)
        codes, abs_m, contribution = (np.asarray(a)[valid] for a in
                                      iv.example_neurons(decoder, lm.params, batch.neuron_inputs.arrays(), len(langs)))
        shared = codes == ALL_SHARED
        for seed in seeds:
            sets = {"all_shared": shared,
                    "previous magnitude": previous(abs_m.mean(1), shared, (codes == PARTIAL_SHARED) | (codes == SPECIFIC),
                                                   np.random.default_rng([seed, index, iv.STREAMS["magnitude"]]))}
            sets.update({c: iv.off_mask(c if c == "top_magnitude" else f"{c}/{seed}", codes, abs_m, index, contribution)
                         for c in CONTROLS[1:]})
            for name, off in sets.items():
                sums.setdefault((name, seed), np.zeros(3))
                sums[(name, seed)] += [off.sum() * len(langs), (abs_m * off[:, None]).sum(),
                                       (contribution * off[:, None]).sum()]
    print(f"{_MODEL.value}, {_TASK.value}, {len(examples)} examples x {len(langs)} languages; ratios to all-shared "
          f"(neurons; mean |m|; contribution mass), mean [min, max] over seeds {seeds}")
    print("| control | neurons | mean abs m | mass |\n|---|---|---|---|")
    for name in CONTROLS:
        r = np.array([[s[0] / t[0], (s[1] / s[0]) / (t[1] / t[0]), s[2] / t[2]]
                      for s, t in ((sums[(name, seed)], sums[("all_shared", seed)]) for seed in seeds)])
        print(f"| {name} | " + " | ".join(f"{r[:, i].mean():.3f} [{r[:, i].min():.3f}, {r[:, i].max():.3f}]"
                                          for i in range(3)) + " |")
    target = sums[("all_shared", seeds[0])]
    print(f"all-shared: mean |m| {target[1] / target[0]:.4f}, "
          f"{target[0] / len(langs) / len(examples) / lm.config.num_layers:.1f} neurons per layer; "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
