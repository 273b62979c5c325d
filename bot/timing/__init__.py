"""Pure Oslo-time rules: the planner (when reminders and surveys are due), office hours and
holidays, Norwegian date phrases, and date formatting. No I/O; the time is passed in."""
