"""Package layout that pyproject.toml alone cannot express.

The model files stay where they are in git (``models/``, 55 MB, never moved or copied)
and are installed as the package ``edge_holistic.models``: ``package_dir`` maps the
folder into the package, so a wheel, ``pip install .`` and ``pip install -e .`` all
find them with ``importlib.resources.files("edge_holistic.models")``.
Everything else (metadata, dependencies, package data) is in pyproject.toml.
"""
from setuptools import find_namespace_packages, setup

setup(
    # namespace discovery, so data-only folders (schema/, web assets) are packages too
    packages=find_namespace_packages(include=["edge_holistic", "edge_holistic.*"], exclude=["*.__pycache__"])
    + ["edge_holistic.models"],
    package_dir={"edge_holistic.models": "models"},
)
