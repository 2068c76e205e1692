"""Document schema, readers, writers, policy, runners, nightly state, report and CLI."""

__version__ = "0.1.0"
