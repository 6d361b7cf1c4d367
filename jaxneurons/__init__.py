"""jaxneurons: how the FFN neurons of LLMs are shared across languages and tasks, in JAX/Flax."""

from jaxneurons.attribution import integrated_gradients, static_scores
from jaxneurons.lens import LogitLens, NeuronTokens, logit_lens, neuron_tokens, plot_logit_lens
from jaxneurons.lm import LanguageModel
from jaxneurons.loading import load_model
from jaxneurons.loading.export import export_hf, to_hf_config
from jaxneurons.models.config import ModelConfig, from_hf_config
from jaxneurons.models.decoder import NAMES, Decoder, Intervention, Patch, Record
from jaxneurons.models.output import Output
from jaxneurons.generation import Generation, generate
from jaxneurons.language_id import identify as identify_language
from jaxneurons.results import (AttributionResult, DeactivationResult, SharingResult, SteeringResult, TemplateResult,
                                load_result)
from jaxneurons.tasks.custom import examples_from_dataset, examples_from_files, make_examples
from jaxneurons.lape import (ActivationStats, NeuronCategories, PerplexityResult, activation_stats, dataset_corpus,
                             files_corpus, lape_neurons, load_lape_neurons, masked_perplexity, neuron_categories,
                             read_lape_masks, relation_summary, save_lape_neurons, write_lape_masks, xnli_corpus)

# Last: `jn.attribution` is the analysis (the function), not the subpackage jaxneurons.attribution, which is
# imported above and stays importable by its full name.
from jaxneurons.analyses import attribution, deactivation, sharing, steering, template_spread  # noqa: E402

__all__ = ["sharing", "attribution", "deactivation", "steering", "template_spread", "load_result", "SharingResult",
           "AttributionResult", "DeactivationResult", "SteeringResult", "TemplateResult", "generate", "Generation",
           "identify_language", "make_examples", "examples_from_files", "examples_from_dataset", "logit_lens",
           "plot_logit_lens", "LogitLens", "neuron_tokens", "NeuronTokens", "integrated_gradients", "static_scores",
           "LanguageModel", "load_model", "export_hf", "to_hf_config", "ModelConfig", "from_hf_config", "NAMES",
           "Decoder", "Intervention", "Patch", "Record", "Output",
           "ActivationStats", "activation_stats", "lape_neurons", "load_lape_neurons", "save_lape_neurons",
           "read_lape_masks", "write_lape_masks", "xnli_corpus", "files_corpus", "dataset_corpus", "masked_perplexity",
           "PerplexityResult", "neuron_categories", "NeuronCategories", "relation_summary"]
__version__ = "0.1.0"
