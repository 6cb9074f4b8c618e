"""``python -m srdeblur`` is the ``srdeblur`` command."""

from srdeblur.cli import main

main()
