"""Data that ships with Veil: the default_credit splits (CSV files in this folder) and
the synthetic anti-money-laundering generator (:mod:`veil.data.aml_synth`)."""
