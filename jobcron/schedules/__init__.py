"""Schedules: when they fire (rules), firing them exactly once (firing), managing them (manage)."""
