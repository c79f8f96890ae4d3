"""The HTTP server: the app and its routes (app.py), the body and queueing rules every image
route shares (uploads.py), and the guard against slow and idle connections (connections.py)."""
