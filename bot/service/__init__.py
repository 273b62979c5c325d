"""The service around the pure engine: the one way in (pipeline), the effect handlers, the
veileder desk, meetings and the scheduler that wakes due rows."""
