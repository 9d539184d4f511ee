"""The ``training`` section: the method (``fusion`` or ``rao2022``), the model names and
their default hyperparameter grids, and the fusion settings."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen

MODEL_NAMES: tuple[str, ...] = ("mlr", "svr", "ann", "rf", "xgb")
"""The five regressors of the method, in the paper's order (see :mod:`dsm.models.estimators`)."""

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    # plain parameter names of the final estimator; scaling steps are not tuned
    "mlr": {"fit_intercept": [True]},
    "svr": {"C": [0.3, 1.0, 3.0], "gamma": ["scale"], "epsilon": [0.005, 0.02]},
    "ann": {"hidden_layer_sizes": [[32], [64, 32]], "alpha": [1e-4, 1e-2]},
    "rf": {"n_estimators": [200], "max_depth": [8, 12], "min_samples_leaf": [1, 5]},
    "xgb": {"n_estimators": [200, 400], "max_depth": [4, 6], "learning_rate": [0.05]},
}
DEFAULT_POOLED_PARAMS: dict[str, Any] = {"n_estimators": 400, "max_depth": 6, "learning_rate": 0.05}
DEFAULT_FUSION_GRID: dict[str, list[Any]] = {
    # regularised boosting; the number of rounds is chosen by the cross-validation (early stopping)
    "max_depth": [3, 5],
    "min_child_weight": [5, 20],
    "subsample": [0.8],
    "colsample_bytree": [0.8],
    "learning_rate": [0.05],
    "reg_lambda": [1.0, 10.0],
}
Method = Literal["fusion", "rao2022"]
METHODS: tuple[Method, ...] = get_args(Method)


class FusionConfig(_Frozen):
    """The default method (``training.method: fusion``): pooled model, cross-validation, fusion.

    See :mod:`dsm.models.fusion_train` (training) and :mod:`dsm.fusion` (the error model and
    the fusion of each cell mean with the day's SMAP).
    """

    grid: dict[str, list[Any]] = Field(default_factory=lambda: dict(DEFAULT_FUSION_GRID),
                                       description="XGBoost hyperparameters searched by cross-validation")
    max_rounds: int = Field(default=600, ge=10, description="most boosting rounds; the CV picks how many")
    cv_folds: int = Field(default=4, ge=2)
    block_days: int = Field(default=16, ge=1, description="days per cross-validation block")
    block_cells: int = Field(default=2, ge=1, description="36 km cells per side of a cross-validation block")
    smap_error_sd: float = Field(default=0.04, gt=0.0, le=0.2,
                                 description="SMAP random error (m3/m3) used when too few triplets estimate it")
    min_triplets: int = Field(default=100, ge=3, description="fewest SMAP triplets to estimate SMAP's error")
    decay_days: float | None = Field(default=None, gt=0.0, description="e-folding of carried increments; "
                                     "null: estimated from the data")
    max_carry_days: int = Field(default=10, ge=0, description="days an increment is carried without SMAP")
    smooth: Literal["none", "increments", "cell_means"] = Field(
        default="cell_means", description="area-to-point smoothing across neighbouring cells, cell means "
        "preserved: of the whole fused cell means (default: no 36 km block edges in the maps), of the fusion "
        "increments only, or none")
    anomaly_gain: float = Field(default=1.0, ge=0.0, le=2.0, description="k in B + k (f - mean_cell f), B the "
                                "(smoothed) fused cell mean; used unless calibrated from stations")
    gain_from_stations: bool = Field(
        default=True, description="calibrate k at prediction from the in situ stations (validation.stations, or "
        "the twin's) when at least min_gain_stations lie in the region: the slope of (station - B) on the "
        "anomaly at the station pixels, used only where it lowers the leave-one-station-out error "
        "(dsm.calibration); recorded in the products store (attribute anomaly_gain)")
    min_gain_stations: int = Field(default=8, ge=3, description="fewest stations (each >= 10 days) to calibrate k")
    anomaly_error_sd: float = Field(
        default=0.03, gt=0.0, le=0.2,
        description="error sd (m3/m3) of the 1 km departure from the cell mean, for sm_unc, where it is not "
        "calibrated at stations: nothing at 36 km observes it, so it is a prior (0.03: the typical spatial sd "
        "of surface soil moisture within ~50 km, Famiglietti et al. 2008)")
    interval_from_stations: bool = Field(
        default=True, description="calibrate that sd at prediction from the in situ stations when at least "
        "min_gain_stations lie in the region: split-conformal, so that sm +- sm_unc covers output.interval of "
        "the station observations (dsm.calibration; leave-one-station-out coverage recorded); recorded in "
        "the products store (attribute anomaly_error)")
    interval_station_offsets: Literal["remove", "keep"] = Field(
        default="remove", description="what that calibration makes of each station's constant offset from the "
        "map (its mean residual): remove: take it out first, as the unbiased RMSE of in situ validation does "
        "(a probe's calibration and depth and its point-to-1 km representativeness are station error, not "
        "map error); keep: calibrate on the raw residuals, so that sm_unc covers the station observations "
        "themselves (wider)")
    monotone_rain: bool = Field(
        default=True, description="constrain the pooled model to be non-decreasing in the day's precipitation "
        "and the antecedent precipitation indices, all else equal (XGBoost monotone_constraints): soil wets "
        "up after rain; without it the trees also fit the rain product's errors")
    rain_free_anomaly: bool = Field(
        default=True, description="the 1 km within-cell anomaly is the mean of the model's and of its companion "
        "without the rain predictors (trained alongside): the rain fields (0.1 degree) carry no 1 km detail, and "
        "the model without them learns the static within-cell pattern better; the cell mean keeps the rain. "
        "Needs output.gap_free (the companions); the card's anomaly_partners lists the pairs used")
    pixels_per_cell: int = Field(default=64, ge=4, description="disaggregation: 1 km pixels sampled per cell-day")
    anomaly_window_days: int = Field(
        default=1, ge=1, le=61, description="centred running mean of the 1 km within-cell anomaly over this "
        "many days (odd; 1: none): smoother day-to-day detail, for users who prefer temporal to spatial detail")

    @field_validator("anomaly_window_days")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"training.fusion.anomaly_window_days must be odd (centred on the day), got {v}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "n_estimators" in v:
            raise ValueError("training.fusion.grid: the number of rounds is chosen by cross-validation; "
                             "set training.fusion.max_rounds instead of n_estimators")
        empty = [k for k, values in v.items() if not values]
        if empty:
            raise ValueError(f"training.fusion.grid has no values for {empty}")
        return {**DEFAULT_FUSION_GRID, **v}


class TrainingConfig(_Frozen):
    """Training: the method, and for ``rao2022`` the per-period samples, split, models, grids,
    selection and fallback.

    ``method: fusion`` (default) trains one pooled, cross-validated XGBoost with reduced
    companions and the fusion error model (``fusion:``); ``method: rao2022`` is the paper's
    per-period method exactly. ``grids`` maps a model name to ``{parameter: [values, ...]}`` of its final estimator
    (no pipeline prefixes); a model given here replaces that model's default grid, the
    others keep theirs (:data:`DEFAULT_GRIDS`).
    """

    models: tuple[str, ...] = MODEL_NAMES
    grids: dict[str, dict[str, list[Any]]] = Field(default_factory=lambda: dict(DEFAULT_GRIDS))
    cv_folds: int = Field(default=3, ge=2)
    min_samples: int = Field(default=100, ge=1, description="fewest samples (SMAP cell-days with valid "
                             "predictors) to train a model: the fusion model, or a period's models (rao2022)")
    aggregation: Literal["mean", "nearest"] = "mean"
    min_valid_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    seed: int = 0
    ks_alpha: float = Field(default=0.05, ge=0.0, le=1.0)
    ks_attempts: int = Field(default=20, ge=1)
    spatial_block: int | None = Field(default=2, ge=1, description="SMAP cells per block side; null: no spatial split")
    method: Method = "fusion"
    disaggregation: bool = Field(default=False, description="fusion: average with a model fitted on 1 km "
                                 "pixels whose loss is on their 36 km mean against SMAP")
    fusion: FusionConfig = FusionConfig()
    pooled: bool = Field(default=True, description="rao2022: also train the pooled comparison model")
    pooled_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_POOLED_PARAMS))
    concurrent_periods: int = Field(default=4, ge=1, description="periods trained at once (client threads): "
                                    "their grid searches keep the workers busy while the client selects and writes")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "predict_with" in data:
            raise ValueError("training.predict_with was removed: the pooled model predicts with "
                             "training.method: fusion (the default), the per-period models with method: rao2022")
        return data

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model name(s) {unknown}; known: {list(MODEL_NAMES)}")
        if not v or len(set(v)) != len(v):
            raise ValueError("models must be a non-empty list without repeats")
        return v

    @field_validator("grids")
    @classmethod
    def _grids(cls, v: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        unknown = [m for m in v if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"grid(s) for unknown model name(s) {unknown}; known: {list(MODEL_NAMES)}")
        for model, grid in v.items():
            if not grid:
                raise ValueError(f"the grid of model '{model}' is empty: give at least one parameter")
            empty = [k for k, values in grid.items() if not values]
            if empty:
                raise ValueError(f"the grid of model '{model}' has no values for {empty}")
        return {**DEFAULT_GRIDS, **v}
