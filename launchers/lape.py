"""LAPE (Tang et al., ACL 2024): language-specific neurons from activation probabilities over monolingual text,
perplexity with each language's neurons zeroed, and how they fall into the paper's per-example categories.

  python launchers/lape.py --flagfile=launchers/configs/lape_gemma.flags
  python launchers/lape.py --model=smollm2-135m --languages=en,de,fr --max_tokens_per_language=20000

Writes output_dir/{run.json, flags.txt, activation_stats.npz, lape_neurons.json, ppl.json, lape_categories.json,
figures/*.png, report.md}. Flags and data are checked before the model loads; a folder holding another run is
refused unless --overwrite.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

_MODEL = flags.DEFINE_string("model", "gemma3-270m", "Zoo name, checkpoint directory, .gguf file or hub id.")
_LANGUAGES = flags.DEFINE_list("languages", "en,de,es,fr,ru,th,tr,vi,zh", "Languages (at least 2).")
_CORPUS = flags.DEFINE_enum("corpus", "xnli", ["xnli", "files"], "xnli: premises and hypotheses of the shared "
                            "XNLI files (offline); files: --corpus_files and --heldout_files.")
_CORPUS_FILES = flags.DEFINE_list("corpus_files", [], "--corpus=files: lang:path, one document a line.")
_HELDOUT_FILES = flags.DEFINE_list("heldout_files", [], "--corpus=files: lang:path of held-out text for the "
                                   "perplexity (none: no perplexity).")
_CORPUS_SPLITS = flags.DEFINE_list("corpus_splits", "test", "--corpus=xnli: splits for identification.")
_HELDOUT_SPLIT = flags.DEFINE_string("heldout_split", "dev", "--corpus=xnli: split of the held-out text ('' : no "
                                     "perplexity); must not be one of --corpus_splits.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 256, "Tokens per row.", lower_bound=2)
_MAX_TOKENS = flags.DEFINE_integer("max_tokens_per_language", None, "Cap of identification tokens per language.",
                                   lower_bound=2)
_HELDOUT_TOKENS = flags.DEFINE_integer("heldout_tokens_per_language", 4096, "Cap of held-out tokens per language.",
                                       lower_bound=2)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Rows per step.", lower_bound=1)
_TOP_RATE = flags.DEFINE_float("top_rate", 0.01, "LAPE: fraction of all neurons kept (lowest entropy).")
_FILTER_RATE = flags.DEFINE_float("filter_rate", 0.95, "LAPE: quantile of the activation probabilities a neuron "
                                  "must exceed in some language.")
_BAR_RATIO = flags.DEFINE_float("activation_bar_ratio", 0.95, "LAPE: quantile above which a kept neuron belongs "
                                "to a language.")
_NEURON_MASKS = flags.DEFINE_string("neuron_masks", None, "Use these neurons instead of identifying them: LAPE's "
                                    ".pth (languages in --mask_languages order) or a lape_neurons.json.")
_MASK_LANGUAGES = flags.DEFINE_list("mask_languages", [], "--neuron_masks .pth: the file's languages, in order.")
_RANDOM_CONTROLS = flags.DEFINE_bool("random_controls", True, "Also zero a count-matched random mask per language.")
_RELATION_TASK = flags.DEFINE_string("relation_task", "xnli", "Parallel task for the category relation "
                                     "(xnli, builtin_nli, ...; '' : none).")
_RELATION_EXAMPLES = flags.DEFINE_integer("relation_examples", 100, "Items of --relation_task.", lower_bound=1)
_RELATION_SPLIT = flags.DEFINE_string("relation_split", "test", "Split of --relation_task.")
_RELATION_FORMAT = flags.DEFINE_string("relation_format", None, "Prompt format of --relation_task (default: the "
                                       "task's).")
_SHARING_DIR = flags.DEFINE_string("sharing_dir", None, "A sharing run of the same model, task, items and "
                                   "languages: its per-layer counts are checked against the relation pass's.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for the 95% intervals.", lower_bound=0)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Weight dtype (and activation dtype, "
                           "unless --compute_dtype).")
_COMPUTE_DTYPE = flags.DEFINE_enum("compute_dtype", None, ["float32", "bfloat16"],
                                   "Activation dtype (default: --dtype); bfloat16 multiplies in bfloat16 with float32 "
                                   "accumulation, norms, softmax and logits.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.environ.get("JAXNEURONS_DATA_DIR"), "Dataset folder.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/lape", "Directory for the results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace another run's files in --output_dir.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue a run of the same flags in --output_dir: its activation "
                            "stats and neurons are reused when the corpus and weights are the same.")
_DEBUG = flags.DEFINE_bool("debug", False, "Tracebacks instead of one-line errors.")

RUNTIME_FLAGS = {"overwrite", "resume", "debug", "output_dir", "batch_size"}


def lang_paths(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        lang, sep, path = item.partition(":")
        if not sep or not lang or not path:
            raise ValueError(f"--{flag}: {item!r} is not lang:path (e.g. en:data/en.txt)")
        out[lang] = path
    return out


def check_flags() -> None:
    from jaxneurons.cli import AT_LEAST_ZERO, Bounds, check_flag_values, launcher_module

    rate = Bounds(0.0, 1.0, low_open=True)
    check_flag_values(launcher_module("top_rate"), {"top_rate": rate, "filter_rate": rate,
                                                    "activation_bar_ratio": rate, "bootstrap": AT_LEAST_ZERO})
    if len(_LANGUAGES.value) < 2 or len(set(_LANGUAGES.value)) != len(_LANGUAGES.value):
        raise ValueError(f"--languages needs at least 2 distinct languages, got {_LANGUAGES.value}")
    if _CORPUS.value == "xnli" and _HELDOUT_SPLIT.value in _CORPUS_SPLITS.value:
        raise ValueError(f"--heldout_split={_HELDOUT_SPLIT.value} is also in --corpus_splits: held-out text must be "
                         "other text (e.g. --corpus_splits=test --heldout_split=dev)")
    if _NEURON_MASKS.value and _NEURON_MASKS.value.endswith(".pth") and not _MASK_LANGUAGES.value:
        raise ValueError("--neuron_masks=*.pth needs --mask_languages (the file's languages, in order)")
    if _NEURON_MASKS.value and not os.path.isfile(_NEURON_MASKS.value):
        raise ValueError(f"--neuron_masks={_NEURON_MASKS.value}: no such file")


def load_corpora() -> tuple[dict, dict | None, str]:
    """(identification corpus, held-out corpus or None, a description) as text, before the model loads."""
    from jaxneurons.lape.corpus import files_corpus, xnli_corpus

    langs = _LANGUAGES.value
    if _CORPUS.value == "files":
        files = lang_paths(_CORPUS_FILES.value, "corpus_files")
        if sorted(files) != sorted(langs):
            raise ValueError(f"--corpus_files must give one file per language of --languages ({langs})")
        held = lang_paths(_HELDOUT_FILES.value, "heldout_files")
        return (files_corpus({l: files[l] for l in langs}), files_corpus({l: held[l] for l in langs}) if held else None,
                f"text files {files}")
    held = xnli_corpus(langs, [_HELDOUT_SPLIT.value], _DATA_DIR.value) if _HELDOUT_SPLIT.value else None
    return (xnli_corpus(langs, _CORPUS_SPLITS.value, _DATA_DIR.value), held,
            f"XNLI {'+'.join(_CORPUS_SPLITS.value)} premises and hypotheses, deduplicated; held out: "
            f"XNLI {_HELDOUT_SPLIT.value or 'none'}")


def load_relation_examples():
    from jaxneurons.tasks import get_task

    if not _RELATION_TASK.value:
        return None, None
    task = get_task(_RELATION_TASK.value)
    loaded = task.load(_LANGUAGES.value, split=_RELATION_SPLIT.value, num_examples=_RELATION_EXAMPLES.value,
                       data_dir=_DATA_DIR.value, prompt_format=_RELATION_FORMAT.value)
    return task, loaded.examples


def given_neurons(num_layers: int):
    from jaxneurons.lape.select import load_lape_neurons, read_lape_masks

    if not _NEURON_MASKS.value:
        return None
    if _NEURON_MASKS.value.endswith(".json"):
        return load_lape_neurons(_NEURON_MASKS.value)
    return read_lape_masks(_NEURON_MASKS.value, _MASK_LANGUAGES.value)


def flags_text(module: str) -> str:
    return "\n".join(line for line in (f.serialize() for f in flags.FLAGS.get_flags_for_module(module)) if line)


def run() -> None:
    import jaxneurons as jn
    from jaxneurons.cli import check_model, folder_identity, launcher_module, load_model_timed
    from jaxneurons.lape.corpus import corpus_rows
    from jaxneurons.lape.perplexity import masked_perplexity
    from jaxneurons.lape.relation import check_against_sharing, neuron_categories, relation_summary
    from jaxneurons.lape.report import saved_identification, token_counts, write_identification, write_lape_run
    from jaxneurons.lape.stats import stats_of_rows
    from jaxneurons.pipeline.identity import corpus_fields, weights_fingerprint
    from jaxneurons.pipeline.output_dir import claim_output_dir
    from jaxneurons.pipeline.outputs import write_flags

    check_flags()
    corpus, heldout, described = load_corpora()
    task, examples = load_relation_examples()
    sharing = jn.load_result(_SHARING_DIR.value, "sharing") if _SHARING_DIR.value else None
    check_model(_MODEL.value, None)
    module = launcher_module("top_rate")
    claim_output_dir(_OUTPUT_DIR.value, folder_identity(module, RUNTIME_FLAGS), _RESUME.value, _OVERWRITE.value)
    write_flags(_OUTPUT_DIR.value, flags_text(module))
    lm = load_model_timed(_MODEL.value, dtype=_DTYPE.value, compute_dtype=_COMPUTE_DTYPE.value)
    rows = corpus_rows(lm.tokenizer, corpus, _MAX_LENGTH.value, _MAX_TOKENS.value)
    held_rows = corpus_rows(lm.tokenizer, heldout, _MAX_LENGTH.value, _HELDOUT_TOKENS.value) if heldout else None
    settings = {"top_rate": _TOP_RATE.value, "filter_rate": _FILTER_RATE.value,
                "activation_bar_ratio": _BAR_RATIO.value}
    facts = {"model": _MODEL.value, "languages": list(rows), "corpus": described, "max_length": _MAX_LENGTH.value,
             "settings": settings, "neurons_from": _NEURON_MASKS.value or "identified",
             "heldout_tokens": token_counts(held_rows) if held_rows else {},
             "identity": {"pass": "lape", "weights": weights_fingerprint(lm.params), "model_config": repr(lm.config),
                          "compute_dtype": str(lm.compute_dtype), **corpus_fields(rows)}}
    saved = saved_identification(_OUTPUT_DIR.value, facts["identity"]) if _RESUME.value else None
    if saved is not None:
        logging.info("--resume: activation stats and neurons of %s reused", _OUTPUT_DIR.value)
        stats, neurons = saved[:2]
    else:
        stats = stats_of_rows(lm, rows, batch_size=_BATCH_SIZE.value)
        neurons = given_neurons(lm.config.num_layers) or jn.lape_neurons(stats, **settings)
        write_identification(_OUTPUT_DIR.value, facts, stats, neurons)
    ppl = masked_perplexity(lm, held_rows, neurons, batch_size=_BATCH_SIZE.value, bootstrap=_BOOTSTRAP.value,
                            random_controls=_RANDOM_CONTROLS.value) if held_rows else None
    relation = None
    if task is not None:
        categories = neuron_categories(lm, task, examples, _LANGUAGES.value, neurons, _BATCH_SIZE.value)
        if sharing is not None:
            check_against_sharing(categories, sharing)
        relation = {**relation_summary(categories, neurons, _BOOTSTRAP.value), "task": task.name,
                    "sharing_run_checked": _SHARING_DIR.value}
    paths = write_lape_run(_OUTPUT_DIR.value, facts, stats, neurons, ppl, relation)
    logging.info("wrote %s", ", ".join(paths.values()))
    print(f"results in {os.path.abspath(_OUTPUT_DIR.value)} (report.md, lape_neurons.json, ppl.json, figures/)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxneurons.cli import run_guarded

    run_guarded(run, _DEBUG.value)


if __name__ == "__main__":
    app.run(main)
