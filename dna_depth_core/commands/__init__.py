"""Subcommands of the ``dna-depth`` CLI: one module each, each a thin shell over a library function.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. ``dna_depth_core.cli`` lists the modules in ``COMMAND_MODULES``.
"""
