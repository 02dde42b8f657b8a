"""The glossary: every term the pages use that a student may not know, in one place. The Glossary page lists them
all; a page names the terms it uses with ``terms_here``, which shows their meanings in an expander and links to the
Glossary page."""
from __future__ import annotations

import streamlit as st

__all__ = ["TERMS", "GLOSSARY_PAGE", "terms_here"]

GLOSSARY_PAGE = "pages/glossary.py"

# Term -> its meaning, in Markdown (the Glossary page sorts them).
TERMS: dict[str, str] = {
    "ablation": "Removing a part of a network (here, one neuron: its weights set to zero) and measuring what "
                "changes; the change in validation loss is that neuron's measured importance.",
    "alpha (power-law exponent)": "The exponent of a power law fitted to the largest eigenvalues of WᵀW (the "
                                  "spectrum's upper tail). Smaller alpha: a heavier tail, which WeightWatcher reads "
                                  "as a well-trained layer; AlphaPruning prunes layers with a larger alpha more.",
    "baseline": "The conventional transfer-learning run: the ImageNet backbone frozen, a new linear head trained "
                "for the dataset. Nothing is pruned.",
    "bootstrap interval": "A 95 % interval for a statistic found by recomputing it on many resamples of the "
                          "neurons drawn with replacement: the middle 95 % of those values.",
    "components": "Groups of neurons connected by edges at τ; an isolated neuron is a component of its own.",
    "coverage": "Of a kept set: the mean, over removed neurons, of the cosine similarity to their closest kept "
                "neuron. High: each removed neuron has a close kept twin.",
    "cosine similarity": "The cosine of the angle between two neurons' weight vectors: 1 same direction, 0 "
                         "unrelated (orthogonal), −1 opposite. It ignores their lengths.",
    "degree (criterion)": "A neuron's weighted degree: the sum of the similarities of its edges above τ.",
    "density": "The share of all neuron pairs that are linked at τ: edges ÷ (n (n − 1) / 2).",
    "eigenvector centrality": "A neuron is central when it is similar to neurons that are themselves central: "
                              "the entries of the leading eigenvector of the graph's weighted adjacency matrix, "
                              "found by power iteration. The paper keeps the most central neurons.",
    "epoch": "One pass over every training image.",
    "fine-tune": "Training a pretrained network further on a new dataset; here the head and the pruned layers' "
                 "part of the network (the suffix), or all of it.",
    "FPGM": "Filter pruning via geometric median (He et al. 2019): a neuron close to the geometric median of its "
            "layer's neurons is redundant and pruned first.",
    "Gini coefficient": "How unequally centrality is spread over a layer's neurons: 0 when every neuron has the "
                        "same, near 1 when one neuron has it all.",
    "Holm correction": "Holm's step-down correction for testing many layers at once: p-values sorted, the k-th "
                       "smallest compared with 5 % ÷ (m − k + 1), so that the chance of any false finding over "
                       "all m layers stays at most 5 %.",
    "inverse-eigenvector": "A control: minus eigenvector centrality, so the least central neurons are kept.",
    "Jaccard index": "The overlap of two kept sets: the neurons in both ÷ the neurons in either (1: the same set, "
                     "0: no neuron in common).",
    "keep ratio": "The fraction of a layer's neurons that pruning keeps: round(n × ratio) neurons.",
    "L1 / L2 norm (criteria)": "The length of a neuron's weight vector, as the sum of absolute values (L1) or the "
                               "square root of the sum of squares (L2): Li et al. 2017 keep the largest.",
    "latency": "The wall time of one forward pass of one image, the median over repeated passes; its spread (the "
               "middle half of the passes) shows how much the machine's other work moved it.",
    "layer, neuron": "A neuron is one output channel of a convolution, or one output of a linear layer; its "
                     "weight vector is its filter (flattened) or its row of W.",
    "Louvain communities": "Groups of neurons more densely linked to one another than to the rest of the graph, "
                           "found by the Louvain method (networkx, with a fixed seed).",
    "MACs": "Multiply-accumulate operations for one image at the stated image size (px): the usual measure of a "
            "network's compute. Shown with thousands separators, or in millions (M) or billions (G).",
    "PageRank": "Google's ranking (Page et al. 1999) on the similarity graph: a neuron scores high when "
                "high-scoring neurons link to it; a damped cousin of eigenvector centrality.",
    "params": "The number of weights and biases in the network (or layer).",
    "power iteration": "Multiplying a vector by a matrix again and again, rescaling each time: it turns toward "
                       "the matrix's leading eigenvector. How eigenvector centrality is computed.",
    "pruned run": "Prune the chosen layers with the chosen criterion and keep ratio, then fine-tune.",
    "random (criterion)": "Neurons kept at random (several seeds): the control every criterion must beat.",
    "redundancy": "Of a kept set: the mean cosine similarity between two kept neurons. High: the kept neurons "
                  "resemble one another.",
    "Spearman's ρ": "The correlation of two rankings, from −1 to 1: here, does a criterion's score rank neurons "
                    "as their measured importance (ablation effect) does?",
    "stable rank": "‖W‖²_F ÷ ‖W‖²₂: roughly, how many directions a layer's weights really use.",
    "suffix (train scope)": "The part of the network after the frozen prefix: the prefix's outputs are computed "
                            "once and cached, and only the suffix (the last blocks and the head) is trained. "
                            "\"all\" trains the whole network on augmented images instead (slower).",
    "τ (tau)": "The similarity threshold: two neurons are linked by an edge when their cosine similarity is above "
               "τ. Lower τ, more edges.",
    "test, validation, training split": "The images are split per class: training images teach the network, "
                                        "validation images measure it while it trains, test images only once at "
                                        "the end.",
    "zero-shot pruning": "Pruning with no fine-tuning afterwards: what accuracy is left when only the kept "
                         "neurons remain.",
}


def terms_here(*names: str) -> None:
    """An expander with the meanings of ``names`` (keys of TERMS) and a link to the whole glossary."""
    with st.expander("Terms on this page"):
        st.markdown("\n".join(f"- **{name}**: {TERMS[name]}" for name in names))
        st.page_link(GLOSSARY_PAGE, label="Every term: the Glossary")
