"""``hal-logging report``: a run at a glance, as one self-contained HTML page.

:mod:`~hal_logging.report.data` reads the local workspace (SQL aggregates and a
bounded tail per task), :mod:`~hal_logging.report.render` turns that into HTML
with Jinja2 (the ``report`` extra), and :mod:`~hal_logging.report.kql` holds the
same view in KQL, for the Azure Monitor workbook
(:mod:`~hal_logging.report.workbook`). Importing this package imports none of
them: ``import hal_logging`` stays free of Jinja2.
"""
