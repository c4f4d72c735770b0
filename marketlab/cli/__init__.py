"""Every ``marketlab`` command: ``demo``, ``collect``, ``serve``, ``sim``, ``store``, ``ingest``,
``export``, ``backfill`` and the rest; :func:`marketlab.cli.main.main` is the entry point."""
