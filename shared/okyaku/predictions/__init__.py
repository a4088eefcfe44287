"""Predictions that are learnt, calibrated and explainable: lead score, churn risk, deal and
pipeline forecasts. See ``service`` for the entry points; scikit-learn loads only when a model
is trained or used."""
