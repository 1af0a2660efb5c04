"""Components that several views lay out the same way."""

from __future__ import annotations

import gradio as gr


def image_input(label: str, elem_id: str) -> gr.Image:
    """An image input (upload, webcam, clipboard) that hands the file over undecoded, so that
    `app.core.images.read_image` turns any bad file into a clear message. (An instance override,
    not a subclass: Gradio writes a .pyi stub next to every module that subclasses a component.)
    """
    image = gr.Image(label=label, type="filepath", image_mode=None, format="png", height=300,
                     sources=["upload", "webcam", "clipboard"], elem_id=elem_id)
    decode = image.preprocess

    def undecoded(payload):  # noqa: ANN001, ANN202 -- Gradio's FileData payload
        return payload.path if payload is not None and payload.path else decode(payload)

    image.preprocess = undecoded
    return image
