"""One dynamic partition per delivered extract date (added by the CLI, tests and the landing sensor)."""

from dagster import DynamicPartitionsDefinition

EXTRACT_DATES = "extract_date"
extract_dates = DynamicPartitionsDefinition(name=EXTRACT_DATES)
