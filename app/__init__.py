"""DMNet Explorer, the Gradio app: how DMNet's dynamic multi-scale filters adapt to each input.

Compute (`analysis`, `attribution`, `filters`, `metrics`, `images`, `models`), pictures
(`figures`, `overlays`, `diagram`), and the app (`actions`, `experiments`, `runtime`, `ui`,
`events`, `text`). `python app.py` at the repository root serves it.
"""
