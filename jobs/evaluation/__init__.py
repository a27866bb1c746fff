"""Evaluating a checkpoint: the one scoring path (scoring.py) behind `tsn test` (tester.py, protocols.py),
`tsn predict` (inference.py, timeline.py) and training-time validation; metrics (metrics.py), score files
(scores.py) and their late fusion, `tsn fuse` (fusion.py)."""
