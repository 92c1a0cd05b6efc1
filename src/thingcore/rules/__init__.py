"""The rules engine: AWS IoT SQL (``sql/``), rule management and the rule actions (``actions/``)."""
