"""Analyse how a model's FFN neurons are shared across languages on a task (the paper's sharing analysis).

  python launchers/analyze.py --flagfile=launchers/configs/demo.flags
  python launchers/analyze.py --model=smollm2-135m --task=xnli --languages=en,de,zh --num_examples=100

Writes output_dir/{run.json, flags.txt, sharing.json, examples.npz, figures/*.png, report.md, state.npz}, and
with --attribution / --interventions also attribution.json / interventions.json and their report sections.
Every flag and the data are checked before the model loads. A folder holding another run's results is refused:
`--resume` continues an interrupted run of the same flags, weights and examples with identical results,
`--overwrite` removes the other run's files first.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name (smollm2-135m, gemma3-270m), a Hugging Face "
                             "checkpoint directory, a .gguf file, a jaxneurons checkpoint directory, or a Hugging "
                             "Face hub id org/name[@revision] (through the HF cache; HF_HUB_OFFLINE=1: cache only).")
_TASK = flags.DEFINE_string("task", "builtin_nli", "Task name: xnli, pawsx, xcopa, mpararel, mzsre_en2all, "
                            "mzsre_all2en, builtin_nli, builtin_facts, or files (your own data: --data_files).")
_LANGUAGES = flags.DEFINE_list("languages", "en,de,es,fr,ru,th,tr,vi,zh", "Comma-separated languages; every "
                               "example is analysed in all of them.")
_SPLIT = flags.DEFINE_string("split", "test", "Dataset split (e.g. test, dev; see the task).")
_PROMPT_FORMAT = flags.DEFINE_list("prompt_format", None, "Task formulation (default: the task's; see README "
                                   "'Task formulations'), e.g. paper (the paper's prompts) or paper_fewshot. Several "
                                   "formats, or a group of templates (e.g. ends_english), sweep them: one run per "
                                   "format in output_dir/<format>/, then templates.json and templates.md (the "
                                   "spread over templates) in output_dir.")
_PROMPT_SUFFIX = flags.DEFINE_string("prompt_suffix", "", "Text appended to every language's prompt; \\n is a "
                                     "newline (e.g. --prompt_suffix='\\nAnswer:').")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples of the examples for the 95% intervals "
                                  "of every headline number (seeded; 0: no intervals).", lower_bound=0)
_CONTROL_ITEMS = flags.DEFINE_integer("control_items", 200, "Grouping controls (non-parallel, same-language; "
                                      "README 'Grouping controls') on the first N examples; 0: none.", lower_bound=0)
_CONTROL_DRAWS = flags.DEFINE_integer("control_draws", 5, "Random regroupings of the items per control.",
                                      lower_bound=1)
_CONTROL_SEED = flags.DEFINE_integer("control_seed", 0, "Seed of the controls' regroupings.", lower_bound=0)
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Use the first N parallel examples (default: all).",
                                     lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Examples per step; each brings one row per language.",
                                   lower_bound=1)
_NEURON_POSITION = flags.DEFINE_enum("neuron_position", "last", ["last", "any_token"], "Neurons at the prompt's "
                                     "last token (the paper's), or activated at any prompt token (any_token).")
_POSITIONS = flags.DEFINE_enum("positions", None, ["last", "all"], "Deprecated spelling of --neuron_position "
                               "(all: any_token); removed in the next release.")
_PACK = flags.DEFINE_bool("pack", True, "Lay each batch's rows one after another into fixed bins instead of "
                          "padding each row: same results, less padding, one compiled shape "
                          "(--neuron_position=last only).")
_THRESHOLDS = flags.DEFINE_list("thresholds", "0,0.1,0.2,0.3,0.4,0.5", "Activation thresholds tau (must "
                                "include 0, the paper's).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Weight dtype (and activation dtype, "
                           "unless --compute_dtype).")
_COMPUTE_DTYPE = flags.DEFINE_enum("compute_dtype", None, ["float32", "bfloat16"],
                                   "Activation dtype (default: --dtype); bfloat16 multiplies in bfloat16 with float32 "
                                   "accumulation, norms, softmax and logits.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/analyze", "Directory for the results.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.environ.get("JAXNEURONS_DATA_DIR"), "Folder with the dataset "
                                "files (default: env JAXNEURONS_DATA_DIR).")
_DATA_SOURCE = flags.DEFINE_enum("data_source", "local", ["local", "hub"], "Read datasets from data_dir (local) "
                                 "or the Hugging Face hub.")
_DATA_FILES = flags.DEFINE_list("data_files", [], "--task=files: one file per language as lang:path, row i of "
                                "every file the same item (.tsv/.csv with a header line, or .jsonl), e.g. "
                                "en:data/en.tsv,de:data/de.tsv.")
_COLUMNS = flags.DEFINE_list("columns", [], "--task=files: field=column for prompt (default column prompt), answer "
                             "(open answers; default column answer), options with gold (multiple choice: a column "
                             "of lists, or a+b+c for one column per option; gold the right option's index) and id, "
                             "e.g. prompt=premise,options=yes+no,gold=label.")
_ON_ERROR = flags.DEFINE_enum("on_error", "raise", ["raise", "skip"], "On a malformed data item: stop with a "
                              "message (raise) or skip and count it (skip).")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run in output_dir (the same flags, weights and "
                            "examples; anything else is refused, naming what differs).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "output_dir holds another run's results: remove all of them "
                               "first (without it, such a folder is refused).")
_DEBUG = flags.DEFINE_bool("debug", False, "On a bad input, show the traceback instead of one line; with "
                            "--steering, also print the first generations of every language and condition.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "Take the tokenizer from here (zoo name, .gguf file, HF or "
                                 "jaxneurons folder), e.g. for a checkpoint folder without tokenizer files.")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False, "Allow loading pytorch_model.bin (a pickle runs code).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
# -- devices and processes (jaxneurons/distributed.py) --
_MESH = flags.DEFINE_string("mesh", "data:-1,fsdp:1", "This process's devices (every process's with --global_mesh) as "
                            "data:D,fsdp:F (-1: the rest); examples split over data (batch_size rounded up to a "
                            "multiple of D), weights over fsdp.")
_GLOBAL_MESH = flags.DEFINE_bool("global_mesh", False, "--mesh lays out every device of every process "
                                  "(jax.distributed; process by process, so fsdp larger than a host's devices "
                                  "splits the weights across hosts): every process runs every batch, process 0 "
                                  "writes. The sharing and deactivation passes only.")
_COORDINATOR_ADDRESS = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for "
                                           "jax.distributed (default: auto-detected on TPU VMs / Slurm).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job; without "
                                      "--coordinator_address they merge through files in output_dir.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")

# Which neurons matter (after the sharing analysis): attribution x category, and deactivation.
_ATTRIBUTION = flags.DEFINE_list("attribution", [], "Attribution methods to split by category: contribution, "
                                 "effective, ig (empty: none). Writes attribution.json.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Top neurons per layer for the category mix (default: the paper's "
                              "800 of 16,384, scaled to the model's layer width).", lower_bound=1)
_IG_STEPS = flags.DEFINE_integer("ig_steps", 20, "Integrated-gradients steps (alphas).", lower_bound=1)
_IG_MAX_STEPS = flags.DEFINE_integer("ig_max_steps", 160, "Adaptive IG: (example, layer) pairs whose completeness "
                                     "error exceeds 5% at --ig_steps are recomputed with doubled steps up to this "
                                     "many (--ig_max_steps=<ig_steps> or lower: --ig_steps everywhere). Pairs that "
                                     "meet 5% keep their --ig_steps numbers.", lower_bound=1)
_IG_RULE = flags.DEFINE_enum("ig_rule", "gauss_legendre", ["gauss_legendre", "trapezoid", "left"], "IG "
                             "integration rule (left: the Knowledge-Neurons Riemann sum, alpha_k = k/n, misses "
                             "completeness by up to 28% at 20 steps on gemma3-270m).")
_IG_PATH = flags.DEFINE_enum("ig_path", "frozen_norm", ["frozen_norm", "knowledge_neurons"], "IG path: "
                             "frozen_norm holds a post-feedforward norm (Gemma 3) at its clean scale so IG sums to "
                             "the layer's effect; knowledge_neurons scales m alone (the same on other families).")
_IG_CHUNK = flags.DEFINE_integer("ig_chunk_size", None, "IG (layer, alpha) replays computed at once (default: "
                                 "as many as fit in about 2 GiB; lower it to bound memory further).", lower_bound=1)
_IG_MEMORY = flags.DEFINE_float("ig_memory_gb", 2.0, "Memory for IG's replays when --ig_chunk_size is not given "
                                "(raise it on a large GPU).")
_ATTRIBUTION_BATCH = flags.DEFINE_integer("attribution_batch_size", 4, "Examples per attribution step.",
                                          lower_bound=1)
_INTERVENTIONS = flags.DEFINE_list("interventions", [], "Sets to deactivate, each measured separately: "
                                   "all_shared, partial_shared, specific (a category; each also runs count-"
                                   "matched to all-shared), random (uniform), magnitude (activated neurons with "
                                   "all-shared's |m|), top_magnitude (the largest-|m| neurons that are not "
                                   "all-shared), mass (not all-shared, as much contribution mass as all-shared), "
                                   "non_parallel (the all-shared neurons of a group of different examples' prompts, "
                                   "one per language) (empty: none). Writes interventions.json.")
_DEACTIVATE_GENERATED = flags.DEFINE_bool("deactivate_generated", False, "With --interventions on an open-answer task "
                                          "(mpararel, mzsre_*, builtin_facts): also score each set on greedy "
                                          "generations (prefix and first-token match) beside teacher forcing.")
_DEACTIVATE_SETS = flags.DEFINE_string("deactivate_sets", None, "With --interventions: also deactivate each "
                                       "language's neurons of this JSON file {lang: {layer: [neurons]}} (e.g. "
                                       "LAPE's lape_neurons.json), in every language, as a set 'set:<lang>'.")
_DEACTIVATE_EVERY_TOKEN = flags.DEFINE_bool("deactivate_every_token", False, "Deactivate at every token "
                                            "instead of the prompt's last token.")
_INTERVENE_ALL = flags.DEFINE_bool("intervene_all_positions", None, "Deprecated spelling of "
                                   "--deactivate_every_token; removed in the next release.")
_RANDOM_SEEDS = flags.DEFINE_integer("random_seeds", 3, "How many seeds (0..N-1) every drawn set takes: the "
                                     "deactivation controls (random, magnitude, mass, count-matched) and the "
                                     "attribution's nulls. --seeds names them instead.", lower_bound=1)
_SEEDS = flags.DEFINE_list("seeds", None, "The seeds of every drawn set, e.g. 0,1,2 (a single value is one seed; "
                           "default: 0..--random_seeds-1). Results give the spread over them.")
_DOSE_FRACTIONS = flags.DEFINE_list("dose_fractions", [], "With --interventions: a dose-response curve, random, "
                                    "|m|-ranked and all-shared sets of these sizes x the all-shared count (e.g. "
                                    "0.25,0.5,1,2), accuracy and gold log-prob against the mass removed.")
_STEERING = flags.DEFINE_bool("steering", False, "Also generate from every language's prompts with each language's "
                              "neurons zeroed or boosted, beside random and |m|-matched controls, and identify the "
                              "language of every output. Writes steering.json and generations.jsonl.")
_STEER_SETS = flags.DEFINE_string("steer_sets", None, "--steering: a JSON file {lang: {layer: [neuron indices]}} "
                                  "(e.g. a LAPE selection); default: the neurons most often specific to each "
                                  "language in these examples (--steer_set_size of each layer).")
_STEER_SET_SIZE = flags.DEFINE_float("steer_set_size", 0.01, "--steering: share of each layer's neurons in a "
                                     "language's computed set.")
_STEER_ACTIONS = flags.DEFINE_list("steer_actions", "off,boost", "--steering: off (zeroed) and/or boost "
                                   "(multiplied by --steer_boost).")
_STEER_CONTROLS = flags.DEFINE_list("steer_controls", "random,matched", "--steering: controls beside each action: "
                                    "random (count-matched) and/or matched (|m|-matched).")
_STEER_BOOST = flags.DEFINE_float("steer_boost", 2.0, "--steering: the factor of boost.")
_STEER_NEW_TOKENS = flags.DEFINE_integer("steer_new_tokens", 24, "--steering: tokens generated per prompt.",
                                         lower_bound=1)
_STEER_BATCH_SIZE = flags.DEFINE_integer("steer_batch_size", 32, "--steering: prompts generated together.",
                                         lower_bound=1)


# Flags of where and how a run executes, never of what it computes: a run resumed with other values is the same
# run. The configs' own fields marked identity=False (e.g. --ig_chunk_size) join them (`not_in_identity`).
RUNTIME_FLAGS = {"resume", "overwrite", "debug", "progress", "output_dir", "data_dir", "data_source", "mesh",
                 "global_mesh", "coordinator_address", "num_processes", "process_id", "allow_pickle", "tokenizer"}


def not_in_identity() -> set[str]:
    """The flags that do not enter the output folder's identity."""
    from jaxneurons.cli import identity_free
    from jaxneurons.pipeline import SharingConfig
    from jaxneurons.pipeline.attribution import AttributionConfig
    from jaxneurons.pipeline.interventions import InterventionsConfig
    from jaxneurons.pipeline.steering import SteeringConfig

    return RUNTIME_FLAGS | identity_free(SharingConfig, AttributionConfig, InterventionsConfig, SteeringConfig)


def parse_thresholds(values: list[str]) -> list[float]:
    return parse_numbers("thresholds", values)


def parse_numbers(flag: str, values: list[str]) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--{flag} must be numbers, got {','.join(values)}") from None


def seeds_setting() -> tuple[str, object]:
    """(flag, value) of the drawn sets' seeds: --seeds as a list of ints, else --random_seeds as a count."""
    if _SEEDS.value is None:
        return "random_seeds", _RANDOM_SEEDS.value
    if flags.FLAGS["random_seeds"].present:
        raise ValueError("--seeds and --random_seeds both given: keep one (--seeds=0,1,2 names the seeds, "
                         "--random_seeds=3 counts them)")
    try:
        return "seeds", tuple(int(v) for v in _SEEDS.value)
    except ValueError:
        raise ValueError(f"--seeds must be ints, e.g. --seeds=0,1,2, got {','.join(_SEEDS.value)}") from None


def sharing_config():
    from jaxneurons.cli import build_config
    from jaxneurons.pipeline import SharingConfig

    return build_config(SharingConfig, batch_size=("batch_size", _BATCH_SIZE.value),
                        neuron_position=("neuron_position", _NEURON_POSITION.value),
                        thresholds=("thresholds", parse_thresholds(_THRESHOLDS.value)),
                        pack=("pack", _PACK.value and _NEURON_POSITION.value == "last"),
                        bootstrap=("bootstrap", _BOOTSTRAP.value),
                        prompt_format=("prompt_format", prompt_format()),
                        prompt_suffix=("prompt_suffix", prompt_suffix()),
                        control_items=("control_items", _CONTROL_ITEMS.value),
                        control_draws=("control_draws", _CONTROL_DRAWS.value),
                        control_seed=("control_seed", _CONTROL_SEED.value))


def attribution_config():
    """The attribution pass's config, None without --attribution."""
    from jaxneurons.cli import build_config
    from jaxneurons.pipeline.attribution import AttributionConfig

    if not _ATTRIBUTION.value:
        return None
    return build_config(AttributionConfig, methods=("attribution", _ATTRIBUTION.value), top_k=("top_k", _TOP_K.value),
                        batch_size=("attribution_batch_size", _ATTRIBUTION_BATCH.value),
                        ig_steps=("ig_steps", _IG_STEPS.value), ig_max_steps=("ig_max_steps", _IG_MAX_STEPS.value),
                        ig_rule=("ig_rule", _IG_RULE.value),
                        ig_path=("ig_path", _IG_PATH.value), seeds=seeds_setting(),
                        bootstrap=("bootstrap", _BOOTSTRAP.value), ig_chunk_size=("ig_chunk_size", _IG_CHUNK.value),
                        ig_memory_gb=("ig_memory_gb", _IG_MEMORY.value))


def interventions_config():
    """The deactivation pass's config, None without --interventions."""
    from jaxneurons.cli import build_config
    from jaxneurons.pipeline.interventions import InterventionsConfig

    if not _INTERVENTIONS.value:
        if _DEACTIVATE_SETS.value or _DEACTIVATE_GENERATED.value:
            raise ValueError("--deactivate_sets and --deactivate_generated need --interventions (e.g. "
                             "--interventions=all_shared,random)")
        return None
    if _DEACTIVATE_SETS.value is not None and not os.path.isfile(_DEACTIVATE_SETS.value):
        raise ValueError(f"--deactivate_sets={_DEACTIVATE_SETS.value}: no such file")
    return build_config(InterventionsConfig, kinds=("interventions", _INTERVENTIONS.value),
                        batch_size=("batch_size", _BATCH_SIZE.value),
                        every_token=("deactivate_every_token", _DEACTIVATE_EVERY_TOKEN.value),
                        seeds=seeds_setting(), bootstrap=("bootstrap", _BOOTSTRAP.value),
                        dose_fractions=("dose_fractions", parse_numbers("dose_fractions", _DOSE_FRACTIONS.value)),
                        generated=("deactivate_generated", _DEACTIVATE_GENERATED.value),
                        neuron_sets=("deactivate_sets", _DEACTIVATE_SETS.value))


def steering_config():
    """The steering pass's config, None without --steering."""
    from jaxneurons.cli import build_config
    from jaxneurons.pipeline.steering import SteeringConfig

    if not _STEERING.value:
        return None
    if _STEER_SETS.value is not None and not os.path.isfile(_STEER_SETS.value):
        raise ValueError(f"--steer_sets={_STEER_SETS.value}: no such file")
    return build_config(SteeringConfig, actions=("steer_actions", _STEER_ACTIONS.value),
                        controls=("steer_controls", _STEER_CONTROLS.value), boost=("steer_boost", _STEER_BOOST.value),
                        seeds=("random_seeds", _RANDOM_SEEDS.value),
                        max_new_tokens=("steer_new_tokens", _STEER_NEW_TOKENS.value),
                        batch_size=("steer_batch_size", _STEER_BATCH_SIZE.value),
                        set_size=("steer_set_size", _STEER_SET_SIZE.value), bootstrap=("bootstrap", _BOOTSTRAP.value))


def check_task():
    """(the task, {prompt format: its template group} of the run or sweep), with --languages, --split and
    --prompt_format checked (the default format resolved to the one used)."""
    from jaxneurons.tasks import get_task

    task = get_task(_TASK.value)
    task.check_languages(_LANGUAGES.value)
    task.check_split(_SPLIT.value)
    return task, task.template_sweep(_PROMPT_FORMAT.value or [None])


def prompt_format() -> str | None:
    """The run's one --prompt_format (a sweep sets it per run, see `use_format`)."""
    return _PROMPT_FORMAT.value[0] if _PROMPT_FORMAT.value else None


def use_format(name: str, output_dir: str) -> None:
    """Make the flags those of one run: --prompt_format=name (flags.txt records the one used) into output_dir."""
    flags.FLAGS.prompt_format = [name]
    flags.FLAGS.output_dir = output_dir


def check_flags() -> None:
    """Every flag's value: quotes a flagfile kept dropped (with a warning), float flags finite and in range."""
    from jaxneurons.cli import POSITIVE, check_flag_values, launcher_module

    check_flag_values(launcher_module("output_dir"), {"ig_memory_gb": POSITIVE})
    renamed_flags()


def check_global_mesh() -> None:
    """A mesh across processes runs the sharing and deactivation passes only: the others are refused before the
    model loads."""
    from jaxneurons import distributed

    asked = [name for name, on in (("--attribution", _ATTRIBUTION.value), ("--steering", _STEERING.value),
                                   ("--deactivate_generated", _DEACTIVATE_GENERATED.value)) if on]
    if asked and distributed.spans_processes(distributed.default_mesh()):
        raise distributed.LayoutError(f"{', '.join(asked)} do not run on a mesh across processes (--global_mesh) "
                                      "yet: run them with each process's own mesh")


def renamed_flags() -> None:
    """The old spellings, one release more: their value moves to the new flag with a warning (and leaves the old
    one unset, so a run's identity and flags.txt hold the new spelling only)."""
    from jaxneurons.cli import rename_flag

    rename_flag("positions", "neuron_position", {"all": "any_token"})
    rename_flag("intervene_all_positions", "deactivate_every_token")


def load_data(task):
    """The data, loaded and checked before the (slow) model load: every example in every language, and (with the
    model's tokenizer) no longer than the model's context (--on_error=skip drops and counts such examples)."""
    from jaxneurons.cli import LONGER_THAN_CONTEXT, check_context
    from jaxneurons.tasks import FilesTask, TaskDataError
    from jaxneurons.tasks.custom import parse_columns, parse_data_files

    files = {}
    if isinstance(task, FilesTask):
        files = {"data_files": parse_data_files(_DATA_FILES.value), "columns": parse_columns(_COLUMNS.value)}
    elif _DATA_FILES.value or _COLUMNS.value:
        raise ValueError(f"--data_files and --columns are read by --task=files only, not --task={_TASK.value}")
    try:
        loaded = task.load(_LANGUAGES.value, _SPLIT.value, _NUM_EXAMPLES.value, _DATA_DIR.value, _DATA_SOURCE.value,
                           _ON_ERROR.value, prompt_format(), prompt_suffix(), **files)
    except TaskDataError as e:  # the library's hint names the argument; here it is a flag
        raise TaskDataError(str(e).replace('pass on_error="skip"', "pass --on_error=skip")) from None
    check_examples(loaded.examples, _LANGUAGES.value)
    check_readout(loaded.examples)
    if _DEACTIVATE_GENERATED.value and (not _INTERVENTIONS.value or task.scoring != "greedy"):
        raise ValueError(f"--deactivate_generated scores open answers under --interventions: it needs "
                         f"--interventions and an open-answer task (mpararel, mzsre_*, builtin_facts), not "
                         f"--task={_TASK.value}")
    loaded.examples, dropped = check_context(loaded.examples, _LANGUAGES.value, _MODEL.value, _TOKENIZER.value,
                                             skip=_ON_ERROR.value == "skip")
    if dropped:
        loaded.skipped[LONGER_THAN_CONTEXT] = dropped
        check_examples(loaded.examples, _LANGUAGES.value)
    if "non_parallel" in _INTERVENTIONS.value and len(loaded.examples) < len(_LANGUAGES.value):
        raise ValueError(f"--interventions=non_parallel groups {len(_LANGUAGES.value)} different examples (one per "
                         f"language of --languages) but the run has {len(loaded.examples)}: raise --num_examples")
    return loaded


def check_examples(examples, languages) -> None:
    """Examples exist, each in every language."""
    if not examples:
        raise ValueError(f"no examples of --task={_TASK.value} --split={_SPLIT.value} in --data_dir={_DATA_DIR.value} "
                         "(check the split, --num_examples and the data files)")
    missing = sorted({lang for ex in examples for lang in languages if lang not in ex.prompts})
    if missing:
        raise ValueError(f"--languages: examples of --task={_TASK.value} lack {', '.join(missing)}; drop them "
                         "from --languages")


def check_readout(examples) -> None:
    """Attribution and deactivation act at the prompt's last token: a formulation that reads the neurons at the
    answer's end (harness) would attribute toward, or deactivate, neurons that have not read the item."""
    answer_end = examples and examples[0].readout == "answer"
    if answer_end and (_ATTRIBUTION.value or (_INTERVENTIONS.value and not _DEACTIVATE_EVERY_TOKEN.value)):
        raise ValueError(f"--prompt_format={prompt_format()} reads the neurons at the end of the gold answer; "
                         "--attribution and --interventions work at the prompt's last token: run them with "
                         "--prompt_format=paper (or another prompt-end format; --deactivate_every_token lifts "
                         "this for --interventions)")


def prompt_suffix() -> str:
    """--prompt_suffix with the escapes \\n and \\t turned into a newline and a tab."""
    return _PROMPT_SUFFIX.value.replace("\\n", "\n").replace("\\t", "\t")


def run_analyses(lm, task, loaded, sharing_cfg, attribution, interventions, steering=None):
    """The passes, as the library calls them (`jaxneurons.analyses`), each config's fields as its settings:
    sharing, then attribution.json / interventions.json when asked for. Each pass writes its files, figures
    and section of report.md; the passes split their examples over the processes, process 0 alone writes.
    Returns the sharing result."""
    from jaxneurons import analyses

    where = dict(task=task, languages=_LANGUAGES.value, output_dir=_OUTPUT_DIR.value, resume=_RESUME.value,
                 progress=_PROGRESS.value)
    sharing = analyses.sharing(lm, loaded.examples, skipped=loaded.skipped, **where,
                               **analyses.config_settings(sharing_cfg))
    if attribution is not None:
        analyses.attribution(lm, loaded.examples, **where, **analyses.config_settings(attribution))
    if interventions is not None:
        analyses.deactivation(lm, loaded.examples, **where, **analyses.config_settings(interventions))
    if steering is not None:
        steered = analyses.steering(lm, loaded.examples, sets=_STEER_SETS.value, **where,
                                    **analyses.config_settings(steering))
        if _DEBUG.value:
            show_generations(steered.generations)
    return sharing


def show_generations(rows: list[dict], per_condition: int = 2) -> None:
    """--debug: the first generations of every prompt language and condition (seeded controls aside)."""
    shown = {}
    for row in rows:
        key = (row["prompt_language"], row["condition"])
        if ":s" in row["condition"] or shown.get(key, 0) >= per_condition:
            continue
        shown[key] = shown.get(key, 0) + 1
        print(f"[{row['prompt_language']} | {row['condition']}] {row['prompt']!r} -> {row['text']!r} "
              f"({row['language']}, {row['confidence']:.2f})")


def own_module() -> str:
    """The module absl files this launcher's flags under (the script's path when run as a script)."""
    from jaxneurons.cli import launcher_module

    return launcher_module("thresholds")


def flags_text() -> str:
    """This launcher's flags (not absl's or jax's) as a flagfile."""
    own = flags.FLAGS.get_flags_for_module(own_module())
    return "\n".join(line for line in (f.serialize() for f in own) if line)


def claim_output_dir(process_index: int, started: float) -> None:
    """Process 0 makes output_dir this run's (refusing another run's, see --resume / --overwrite); the others
    wait for that claim."""
    from jaxneurons.cli import folder_identity
    from jaxneurons.pipeline.output_dir import check_writable, claim_output_dir as claim, wait_for_claim

    identity = folder_identity(own_module(), not_in_identity())
    if process_index == 0:
        claim(_OUTPUT_DIR.value, identity, _RESUME.value, _OVERWRITE.value)
    else:
        check_writable(_OUTPUT_DIR.value)
        wait_for_claim(_OUTPUT_DIR.value, identity, since=started if _OVERWRITE.value else None)


def analyze() -> None:
    """Every check (of every template of a sweep), then the model load, then the passes (once per template)."""
    import time

    from jaxneurons import analyses, distributed
    from jaxneurons.cli import check_model, load_model_timed, quiet_checkpoint_logs
    from jaxneurons.pipeline.outputs import write_flags

    started = time.time()
    check_flags()
    quiet_checkpoint_logs()  # an orbax model folder loads with a few dozen INFO lines
    distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    distributed.set_default_mesh(distributed.make_mesh(_MESH.value, across_processes=_GLOBAL_MESH.value))
    check_global_mesh()
    task, sweep = check_task()
    root = _OUTPUT_DIR.value
    if len(sweep) > 1:
        check_sweep_folder(root)
    runs = []
    for name in sweep:
        use_format(name, root if len(sweep) == 1 else os.path.join(root, name))
        configs = sharing_config(), attribution_config(), interventions_config(), steering_config()
        loaded = load_data(task)
        logging.info("%s (%s): %d examples in %s (skipped: %s)", task.name, name, len(loaded.examples),
                     ",".join(_LANGUAGES.value), loaded.skipped or "none")
        runs.append((name, _OUTPUT_DIR.value, loaded, configs))
    check_model(_MODEL.value, _TOKENIZER.value)
    process_index = distributed.process_layout()[0]
    lm, results = None, {}
    for name, output_dir, loaded, configs in runs:
        use_format(name, output_dir)
        claim_output_dir(process_index, started)
        lm = lm or load_model_timed(_MODEL.value, dtype=_DTYPE.value, compute_dtype=_COMPUTE_DTYPE.value,
                                    allow_pickle=_ALLOW_PICKLE.value,
                                    tokenizer=_TOKENIZER.value)
        if process_index == 0:
            write_flags(output_dir, flags_text())
        results[name] = sharing = run_analyses(lm, task, loaded, *configs)
        print(f"{name + ': ' if len(sweep) > 1 else ''}accuracy: "
              f"{', '.join(f'{k} {v:.2f}' for k, v in sharing.accuracy.items())}")
        print(f"results in {os.path.abspath(output_dir)} (report.md, sharing.json, examples.npz, figures/)")
    if len(sweep) > 1 and process_index == 0:
        analyses.template_spread(results, formulations=sweep, output_dir=root)
        print(f"template spread in {os.path.abspath(root)} (templates.md, templates.json, figures/templates.png)")


def check_sweep_folder(root: str) -> None:
    """A sweep's output_dir holds one folder per template: never one run's own files."""
    from jaxneurons.pipeline.output_dir import RUN_FILE

    if os.path.exists(os.path.join(root, RUN_FILE)):
        raise ValueError(f"--output_dir={root} holds a single run ({RUN_FILE}); a template sweep (several "
                         "--prompt_format) writes one folder per template: choose another --output_dir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxneurons.cli import run_guarded

    run_guarded(analyze, _DEBUG.value)


if __name__ == "__main__":
    app.run(main)
