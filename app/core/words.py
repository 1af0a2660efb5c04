"""The words every view shares: the reference they cite, and the glossary of the technical terms
they use (`gloss` marks a term's first use in a text with its meaning, shown on hover; the About
tab lists them all, `glossary`)."""

from __future__ import annotations

import html
import re

PAPER = ("He, Deng, Qiao, *Dynamic Multi-Scale Filters for Semantic Segmentation*, ICCV 2019 "
         "([paper](https://openaccess.thecvf.com/content_ICCV_2019/papers/He_Dynamic_Multi-Scale_"
         "Filters_for_Semantic_Segmentation_ICCV_2019_paper.pdf), [mmsegmentation config]"
         "(https://github.com/open-mmlab/mmsegmentation/tree/main/configs/dmnet))")

# term (as the views write it; matched whole-word, any case) -> its meaning in plain words
GLOSSARY: dict[str, str] = {
    "DCM": "Dynamic Convolutional Module: one branch of DMNet's head, for one filter size k. It "
           "makes a k×k filter for every channel from the image, then filters with it.",
    "depthwise": "a convolution where each channel is filtered by its own filter, with no mixing "
                 "between channels (DMNet's generated filters are applied this way)",
    "channel": "one of the feature maps a layer outputs (a 2-D map of one learned feature); "
               "each DCM makes one filter per channel",
    "adaptive average pooling": "averaging a feature map over a k×k grid of regions, whatever "
                                "the image's size: DMNet's summary of the image for each DCM",
    "dynamic part": "what this image changed in a generated filter: the filter minus its mean "
                    "over a fixed set of reference images",
    "mean filter": "a channel's generated filter averaged over a fixed set of reference images: "
                   "the part that does not depend on the image (also called static)",
    "varies": "how much a channel's generated filter changes from image to image: the spread "
              "(standard deviation) of its taps over the reference images",
    "logit": "the raw score the network gives each class at a pixel; the highest wins",
    "margin": "how far the winning class's score is ahead of the runner-up's at a pixel: the "
              "larger, the surer the model",
    "BN": "batch normalization: rescales each channel with a scale and shift learned in "
          "training",
    "mIoU": "mean intersection over union: per class, the pixels both the prediction and the "
            "true mask give that class, over the pixels either gives it; averaged over classes",
    "ablation": "removing a part of the network (here a branch's output, or the image-dependence "
                "of its filters) to see what the prediction loses without it",
}

_SKIP = re.compile(r"(`[^`]*`|\[[^\]]*\]\([^)]*\)|<[^>]+>|\*\*[^*]*\*\*)")  # code, links, tags,
# bold (a bold term is a heading of its own paragraph)


def gloss(text: str) -> str:
    """`text` (markdown) with the first plain use of each glossary term marked: its meaning shows
    on hover (`<abbr title>`, dotted underline). Terms in code, links, tags and bold stay as they
    are."""
    done: set[str] = set()
    parts = _SKIP.split(text)
    for i in range(0, len(parts), 2):  # the even parts are plain text
        plain, spans = parts[i], []
        for term, meaning in GLOSSARY.items():
            if term in done:
                continue
            pattern = re.compile(rf"(?<![\w-])({re.escape(term)}s?)(?![\w-])",
                                 0 if term.isupper() else re.IGNORECASE)
            for found in pattern.finditer(plain):
                if all(found.end() <= s or found.start() >= e for s, e, _ in spans):
                    spans.append((found.start(), found.end(), meaning))
                    done.add(term)
                    break
        for start, end, meaning in sorted(spans, reverse=True):
            plain = (plain[:start] + f'<abbr class="gloss" title="{html.escape(meaning)}">'
                     f"{plain[start:end]}</abbr>" + plain[end:])
        parts[i] = plain
    return "".join(parts)


def glossary() -> str:
    """Every term and its meaning, as a markdown list (the About tab's glossary)."""
    return "\n".join(f"- **{term}**: {meaning.rstrip('.')}." for term, meaning in
                     sorted(GLOSSARY.items(), key=lambda item: item[0].lower()))
