"""Analysis over Reports: `diagnose` (rules → findings) and `compare` (two Reports → a Comparison)."""
