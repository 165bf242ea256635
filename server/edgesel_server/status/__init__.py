"""The status page on the metrics port: in-memory history, HTML with inline SVG charts (docs/status.md)."""
