"""Dataset preparation behind `tsn prepare`: file lists from official annotations, video re-encoding,
RGB frame and optical-flow extraction. Each module holds one concept; `jobs/prepare.py` is the CLI."""
