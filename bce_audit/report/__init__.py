"""Every report: interchangeable renderers of one AuditResult and of one check Verdict, one module
that formats numbers (``numbers``) and one that lays out tables (``layout``).

Each file-format renderer returns a string; the terminal renderer returns lines of rich Text.
Import a renderer from its module (``report.csv_format``, ``report.junit``, ...): this package
imports nothing, so that ``numbers`` can be used anywhere below it without pulling every renderer.
"""
