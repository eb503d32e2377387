"""The CI gate, `bce-audit check`: what a check decided (``interface``), threshold rules
(``thresholds``), the tolerance (``tolerance``), the baseline file (``baseline``), a run against
its baseline (``compare``), and planning and judging a check (``plan``)."""
