"""The webhook receiver of the alert tests, for every budgets test that needs one."""

from tests.budgets.test_alerts import receiver  # noqa: F401  (a fixture)
