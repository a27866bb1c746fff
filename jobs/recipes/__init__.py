"""Recipes: the shipped TOML files (beside this module), TOML -> one frozen `Config` (config.py), and config -> DALI
loader (loaders.py), the one place a recipe's data sections become a pipeline. Only jobs knows configs."""
