"""``pytest --artflow examples`` runs every flow file here with default
Parameters, but ``csv_totals_flow.py`` reads its input from S3: its test
(``test_csv_totals_flow.py``) puts the input there and runs it."""

collect_ignore = ["csv_totals_flow.py"]
