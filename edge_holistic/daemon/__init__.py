"""The daemon (``edge-holistic run``), one room per concern; ``app`` wires them.

The ``run`` verb's ``add_arguments``/``main`` are re-exported here so ``edge_holistic.cli``
keeps pointing at ``edge_holistic.daemon``.
"""
from .app import EXIT_CONFIG, EXIT_MEMORY, EXIT_OK, Daemon, add_arguments, cli_overrides, main
from .view import DaemonView

__all__ = ["Daemon", "DaemonView", "EXIT_CONFIG", "EXIT_MEMORY", "EXIT_OK", "add_arguments", "cli_overrides",
           "main"]
