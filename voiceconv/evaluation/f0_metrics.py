"""F0 metrics between a converted and a reference utterance, on DTW-aligned frames.

Frames are aligned with the same DTW path as the MCD (on mel-cepstra c1..), so the
F0 figures and the MCD speak about the same frame pairs. Conventions:

* log-F0 RMSE in cents-free natural-log units is hard to read, so we report it in
  **cents** (``1200 * log2(f_conv / f_ref)``), over frames voiced in both;
* Pearson correlation of log-F0 over frames voiced in both;
* voiced/unvoiced error: share of aligned frames whose voicing decisions differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voiceconv.evaluation.mcd import WorldFeatures, dtw_path


@dataclass(frozen=True)
class F0Scores:
    log_f0_rmse_cents: float
    log_f0_corr: float
    vuv_error: float
    voiced_pairs: int


def f0_scores(ref: WorldFeatures, est: WorldFeatures) -> F0Scores:
    """F0 RMSE (cents), correlation and V/UV error of ``est`` against ``ref``."""
    i, j = dtw_path(ref.mcep[:, 1:], est.mcep[:, 1:])
    fr, fe = ref.f0[i], est.f0[j]
    vr, ve = fr > 0, fe > 0
    both = vr & ve
    vuv = float(np.mean(vr != ve)) if len(i) else float("nan")
    if both.sum() < 2:
        return F0Scores(float("nan"), float("nan"), vuv, int(both.sum()))
    lr, le = np.log2(fr[both]), np.log2(fe[both])
    rmse = float(1200.0 * np.sqrt(np.mean((le - lr) ** 2)))
    corr = float(np.corrcoef(lr, le)[0, 1]) if lr.std() > 0 and le.std() > 0 else float("nan")
    return F0Scores(rmse, corr, vuv, int(both.sum()))
