"""Trees scored by LightGBM itself, from the booster's model string: the serving form's path where the C
kernel (``models/_trees.c``) was not built or cannot read the trees.

This is the one module of the serving form that imports LightGBM; :class:`models.compiled_trees.CompiledTrees`
imports it only when it needs it, so a process whose kernel scores the trees never loads LightGBM.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from leadscore.models.threads import lightgbm_threads


class BoosterFallback:
    """Raw margins and TreeSHAP contributions of encoded rows, by ``lightgbm.Booster.predict``."""

    def __init__(self, model_string: str):
        self.booster = lgb.Booster(model_str=model_string)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """``predict(raw_score=True)``."""
        return self.booster.predict(X, raw_score=True, num_threads=lightgbm_threads(len(X)))

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw margin (n,) and ``predict(pred_contrib=True)`` without its expected-value column (n, features)."""
        threads = lightgbm_threads(len(X))
        contributions = self.booster.predict(X, pred_contrib=True, num_threads=threads)
        return self.booster.predict(X, raw_score=True, num_threads=threads), np.ascontiguousarray(contributions[:, :-1])
