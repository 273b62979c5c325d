"""Reports for the resource group from the anonymous rows: the pure report, its HTML, Markdown
and CSV formats, the 14-day digest, and «Du sa – vi gjorde» announcements."""
