"""Media on disk, shared by `tsn prepare` (jobs/dataprep) and `tsn predict` (jobs/evaluation): frame file names and
the one frame-counting rule (naming.py), finding videos and frame folders (discovery.py)."""
