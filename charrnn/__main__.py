"""python -m charrnn"""

from .cli import main

main(prog_name="charrnn")
