"""The interactive demo (``petseg demo``): session logic, models, drawing and the Gradio app."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere below
