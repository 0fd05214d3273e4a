"""``python -m batchops`` is the ``batchops`` command."""

from batchops.cli import main

# Guarded: a spawned worker process (import preparation) re-imports the parent's main
# module under another name, and must not run the CLI again.
if __name__ == "__main__":
    main()
