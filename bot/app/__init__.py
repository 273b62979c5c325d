"""Wiring: settings and the configuration file, the web server, the command line, the demo and
the coordinators' transcript tests. Small and without conversation logic."""
