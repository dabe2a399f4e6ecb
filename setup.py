"""What pyproject.toml cannot declare without an experimental table: the two C kernels.

``leadscore.models._trees`` scores and explains compiled trees; ``leadscore.features._engagement`` aggregates engagement.
Both are optional: where no C compiler is found, leadscore installs anyway and runs the numpy form of
the same computation (``models/compiled_trees.py``, ``features/engagement.py``), which tests hold equal.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("leadscore.models._trees", sources=["models/_trees.c"], optional=True),
        Extension("leadscore.features._engagement", sources=["features/_engagement.c"], optional=True),
    ]
)
