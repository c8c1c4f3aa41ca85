"""The operator console: GET /console, its static files and its operator routes under /console/api."""
