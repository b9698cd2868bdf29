"""Loading extensions: preload.py flags, install.py runs (with the program's pins as pip
constraints), gradio component hooks, the page's extension JS/CSS, installing from a folder or zip."""
