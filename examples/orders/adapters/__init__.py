"""Adapters: the database, the tables of each part of the shop, and the simulated providers."""
