"""The bundled model files, installed as package data of ``edge_holistic.models``.

This folder is mapped into the package by setup.py (``package_dir``); see
edge_holistic/runtime/registry.py for how the bundled manifest is merged with a
writable user models directory.
"""
