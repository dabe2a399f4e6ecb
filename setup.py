"""What pyproject.toml cannot declare without an experimental table: the three C kernels.

``leadscore.models._trees`` scores and explains compiled trees; ``leadscore.features._engagement`` aggregates
engagement; ``leadscore.models._sandwich`` computes the Hessian of the spline model's Newton steps. All are
optional: where no C compiler is found, leadscore installs anyway; trees are then scored by LightGBM from the
model's booster (``models/booster_fallback.py``), engagement is aggregated by its plain Python reference
(``features.engagement.reference_engagement``) and the Hessian by scipy (``models.newton.sandwich_reference``).
Tests hold each kernel equal to its counterpart.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("leadscore.models._trees", sources=["models/_trees.c"], optional=True),
        Extension("leadscore.features._engagement", sources=["features/_engagement.c"], optional=True),
        Extension("leadscore.models._sandwich", sources=["models/_sandwich.c"], optional=True),
    ]
)
