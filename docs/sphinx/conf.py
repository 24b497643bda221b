"""Sphinx configuration of the user documentation, whose pages live in ``pyterrier_lateint/pt_docs`` (where PyTerrier
extensions keep their documentation pages, in PyTerrier's format).

Build (the tests do, with warnings as errors: ``tests/test_docs.py``)::

    sphinx-build -W -b html -c docs/sphinx pyterrier_lateint/pt_docs build/docs

No extension reaches the network: intersphinx is not used (PyTerrier's names are plain literals in the pages).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # autodoc imports the package of this checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

project = "pyterrier-lateint"
author = "pyterrier-lateint contributors"
copyright = "pyterrier-lateint contributors"
root_doc = "index"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_title = "pyterrier-lateint"
pygments_style = "sphinx"
