"""The direction model: purged splits, the LightGBM + XGBoost stack, calibration, thresholds (issue 4).

- ``cv``: walk-forward folds and time blocks with purge and embargo
- ``stack``: base learners, meta-learner, Platt calibrator for one direction
- ``metrics``: held-out scores and the operating threshold chosen by net-of-fee expected value
- ``model``: ``StackedModel`` (both directions, thresholds, feature list) and its files
- ``train``: fit and score everything on fit / calibrate / test blocks
- ``diagnostics``: the plots and tables logged with each training run
- ``registry``: MLflow runs, registration, aliases, loading; ``store``: where the store lives and
  rebasing it when the project folder moves or is copied
- ``compare`` / ``ui``: ``python -m models compare A B`` and ``python -m models ui`` (docs/models.md)
"""
