"""LAPE (Tang et al., ACL 2024): language-specific neurons from activation probabilities over monolingual text,
their perplexity effect, and how they relate to the paper's per-example categories."""

from jaxneurons.lape.corpus import dataset_corpus, files_corpus, xnli_corpus
from jaxneurons.lape.perplexity import PerplexityResult, masked_perplexity
from jaxneurons.lape.relation import NeuronCategories, neuron_categories, relation_summary
from jaxneurons.lape.select import (load_lape_neurons, lape_neurons, read_lape_masks, save_lape_neurons,
                                    write_lape_masks)
from jaxneurons.lape.stats import ActivationStats, activation_stats

__all__ = ["ActivationStats", "activation_stats", "lape_neurons", "load_lape_neurons", "save_lape_neurons",
           "read_lape_masks", "write_lape_masks", "xnli_corpus", "files_corpus", "dataset_corpus", "masked_perplexity", "PerplexityResult",
           "neuron_categories", "NeuronCategories", "relation_summary"]
