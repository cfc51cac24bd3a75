"""Records: the daily-data answer decoded at one boundary (`decode.decode_daily_data`) into one
row type (`wire.Row`), typed in C for ordinary pages (`wire`) or converted from exact dicts for the
rest (`careful`), and mapped to the database's exact records (`mapper`): 64-bit IDs as integers,
money in integer fen, text storable, every oddity counted."""
