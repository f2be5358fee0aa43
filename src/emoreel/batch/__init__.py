"""Many videos (and long videos in parts) into one folder of results folders: the tasks a
worker runs, the engines that run them (local processes or Ray), the batch table and the batch report.

May import: every layer below it (shared modules, media, model, faces, analysis, outputs); only the CLI imports batch.
"""
