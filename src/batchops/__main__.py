"""``python -m batchops`` is the ``batchops`` command."""

from batchops.cli import main

main()
