"""Per-period regression models: split, the five regressors, search, selection, store, pooled model.

Modules
-------
split       date-stratified 50/50 split with KS redraw; spatial-block split       (pure)
estimators  the five regressors (MLR, SVR, ANN, RF, XGB) and their grids
search      grid-search CV on RMSE: dask-ml on the cluster, or scikit-learn locally
select      scores, selection (lowest mean(train, test RMSE)), fallback chain    (pure)
period      training one period and its model card
pooled      one xgboost.dask model over all periods with day-of-year terms
store       the model store (XGBoost JSON / joblib + versions, JSON cards) at any fsspec URL
report      the per-period table and the paper's Table 4 from stored cards     (pure)
train       orchestration over periods on the cluster (:func:`dsm.stages.train.train`)
"""
