"""Training a recipe, `tsn train`: the run (trainer.py), the step and epoch loop (loop.py), the lr schedule
(schedule.py) and the logs (logs.py)."""
