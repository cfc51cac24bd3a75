"""Records: the daily-data answer decoded into typed rows (`wire`) and mapped to the database's
exact records (`mapper`): 64-bit IDs as integers, money in integer fen, Shanghai dates."""
