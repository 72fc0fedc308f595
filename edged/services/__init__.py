"""Services turn driver events into local decisions and publications."""
