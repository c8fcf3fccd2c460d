"""Delivery to Discord: surfaces (where a job talks), progress (running a job), posting, restart recovery."""
