"""IG's completeness on a zoo model: how many (example, language, layer) rows the adaptive IG brings within 5%.

    python benchmarks/ig_completeness.py --model=smollm2-135m --num_examples=4
    python benchmarks/ig_completeness.py --model=gemma3-270m --num_examples=2

Runs `jn.attribution(..., methods=("ig",))` on the built-in NLI set (no data directory needed) with the pass's
defaults (20 Gauss-Legendre nodes, adaptive up to 160) and prints `ig.completeness`: the worst row, the rows
above the tolerance, and the rows per node count. A measurement for BUILD_NOTES.md, not a test.
"""

from __future__ import annotations

import json
import time

from absl import app, flags

_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name, checkpoint directory, .gguf file or hub id.")
_EXAMPLES = flags.DEFINE_integer("num_examples", 4, "Built-in NLI items.", lower_bound=1)
_LANGUAGES = flags.DEFINE_list("languages", ["en", "de"], "Languages of the built-in NLI set.")


def main(argv: list[str]) -> None:
    del argv
    import jaxneurons as jn
    from jaxneurons.tasks import get_task

    lm = jn.load_model(_MODEL.value)
    task = get_task("builtin_nli")
    examples = task.load(_LANGUAGES.value, num_examples=_EXAMPLES.value, prompt_format="paper")
    start = time.perf_counter()
    result = jn.attribution(lm, examples, task=task, methods=("ig",), progress=False, seeds=1, bootstrap=50,
                            batch_size=2)
    completeness = result.summary["ig"]["completeness"]
    keys = ("max_error", "worst_row", "rows_above_tolerance", "rows", "satisfied", "nodes")
    print(json.dumps({"model": _MODEL.value, "examples": _EXAMPLES.value, "languages": _LANGUAGES.value,
                      "seconds": round(time.perf_counter() - start), **{k: completeness[k] for k in keys}}))


if __name__ == "__main__":
    app.run(main)
