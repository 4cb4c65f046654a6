"""`repro report`: read a table's runs back from MLflow; write its md, tex, csv and plots."""
