"""Integrations with the frameworks applications enqueue from: `jobcron.contrib.sqlalchemy`, `jobcron.contrib.django`.

Each is imported only by the application that uses it; nothing else in jobcron imports them.
"""
