"""The glossary: a term's first plain use in a text carries its meaning on hover."""

from __future__ import annotations

import re

from app.core.words import GLOSSARY, gloss, glossary


def marked(text: str) -> list[str]:
    return re.findall(r'<abbr class="gloss" title="[^"]*">([^<]*)</abbr>', text)


def test_the_first_plain_use_of_each_term_is_marked_once():
    text = "Each DCM filters every channel depthwise; every channel, again. It varies."
    assert marked(gloss(text)) == ["DCM", "channel", "depthwise", "varies"]
    plain = re.sub(r'title="[^"]*"', "", gloss(text))
    assert plain.count("channel") == 2  # the second use is left as it is


def test_code_links_bold_and_tags_stay_as_they_are():
    text = "The `margin` and [mIoU](https://x/mIoU) and **BN** and <img alt='logit'>: none."
    assert gloss(text) == text


def test_plurals_and_case_match_but_not_parts_of_words():
    assert marked(gloss("Margins of dynamic parts")) == ["Margins", "dynamic parts"]
    assert marked(gloss("channelwise, submargin, BNX, bn")) == []  # BN only in capitals


def test_every_view_that_teaches_glosses_its_words():
    from app.views.branches import BRANCHES

    assert {"DCMs", "depthwise"} <= set(marked(gloss(BRANCHES)))
    listed = glossary()
    assert all(f"- **{term}**: " in listed for term in GLOSSARY)
    assert all(line.endswith(".") and not line.endswith("..") for line in listed.splitlines())
