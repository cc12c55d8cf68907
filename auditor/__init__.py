"""AI risk and data-quality governance auditor.

The pipeline, one module per stage: ``policy`` → ``inputs`` → ``engine`` (runs ``auditor.checks``) →
``report`` (results, summary, gate) → ``formats`` (JSON, summary table) → exit code.
"""

__version__ = "0.1.0"
