"""The one thing pyproject.toml cannot declare without an experimental table: the compiled-trees kernel.

It is optional: where no C compiler is found, leadscore installs anyway and scores with the numpy
form of the same tables (``models/compiled_trees.py``), which tests hold equal to the kernel.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("models._trees", sources=["models/_trees.c"], optional=True)])
