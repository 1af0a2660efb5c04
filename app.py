"""DMNet Explorer: `python app.py` serves the Gradio app (also the Hugging Face Space's entry)."""

from app.page import launch

if __name__ == "__main__":
    launch()
