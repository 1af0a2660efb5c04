"""Model card / About: the card of the model in use (what it learned and how well; in the
sidebar) and the About tab (the architecture diagram, the paper in brief and the glossary)."""

from __future__ import annotations

import gradio as gr

from app.core.wiring import PRIVATE, Graph
from app.core.words import PAPER, gloss, glossary
from app.views.about import card
from app.views.about.diagram import architecture_svg

ABOUT = f"""## About DMNet
DMNet (Dynamic Multi-scale Network) segments an image with a dilated ResNet backbone (output
stride 8) and a head of parallel **Dynamic Convolutional Modules** (DCMs). Where earlier
multi-scale heads use fixed filters of several sizes, dilation rates or pooling grids, a DCM
*generates* its filters from the input: the features are average-pooled to k×k and a 1×1
convolution turns the pooled map into one k×k filter per channel. The features, reduced by a 1×1
convolution, are then convolved depthwise with these filters (each channel with its own filter),
normalised and rectified. The outputs of the DCMs (k = 1, 3, 5, 7 in the published models) are
concatenated with the backbone features and fused by a 3×3 convolution before the classifier.

This app runs a plain-PyTorch DMNet that loads mmsegmentation's checkpoints unchanged: the
bundled demo model (a small ResNet-18 DMNet trained on ContextShapes) or the 12 official
Cityscapes and ADE20K models. Every view comes from one forward pass (`DMNet.inspect`).

{PAPER}"""


def create_about() -> None:
    """The About tab: the architecture, drawn in the inputs' colours, and the paper in brief."""
    gr.HTML(architecture_svg(), elem_id="architecture")
    gr.Markdown(gloss(ABOUT))
    with gr.Accordion("Glossary: the words the views use", open=False, elem_id="glossary"):
        gr.Markdown(glossary())


def wire_about(g: Graph, inp: dict, start, loads: list, ready) -> None:
    """The card of the model in use, on start (`start`) and after each load (`loads`); for each
    new subject (`ready`), a note when the image is far from the model's training data."""
    model = inp["model"]
    g.heavy(start.then, card.model_card_or_note, [model], [inp["card"]], **PRIVATE)
    for kept in loads:
        g.heavy(kept.success, card.model_card_or_note, [model], [inp["card"]], **PRIVATE)
    g.heavy(ready.success, card.domain_note, [model, inp["image"]], [inp["domain"]], **PRIVATE)
