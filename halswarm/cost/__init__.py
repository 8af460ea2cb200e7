"""Cost tracking: provider admin APIs, opencode's estimates, daily buckets, reports, budgets."""
