"""Speed measurements of the project's API: ratios against baselines measured in the same run.

``python -m benchmarks.run`` (``make bench``) drives them; see docs/benchmarks.md.
"""
