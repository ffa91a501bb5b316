"""Prices and exchange rates read from outside sources (see `sources` for the interface, `ecb` and `csv_prices`
for the adapters, `services` for the one write that stores what they read)."""
