"""The pipeline's default sizes, in a module that imports nothing: the command line names them
in its flags and their --help without loading the database and HTTP stacks.

`runs` (one run) and `fleet` (several apps) take them from here.
"""

# Partitions in flight: enough requests to fill 10 QPS when answers take ~3 s.
DEFAULT_CONCURRENCY = 32
# Rows in memory at once (sync.pipeline.budget): 4 full pages, ~60 MB decoded.
DEFAULT_BUFFER_ROWS = 40_000
# Apps synced at once: each may use its own 10 QPS, but a small app uses about half of it (it
# waits for its last answers, 0.5-3 s, and its merges before its slot frees), so it takes 24 to
# keep >100 requests/s busy when the platform answers in 0.5-3 s (bench `fleet-small`, 200 apps
# of 200 videos: 16 at once 78 requests/s, 24 118, 32 158); each holds one database connection
# for its lock, so the pool is 24 + 16 writers + 4 overflow = 44 (32 would take 52).
DEFAULT_APPS_AT_ONCE = 24
# The rows in memory, all apps together (`--buffer-rows` with an apps file). One app's 10 pages
# a second need ~4 pages in memory; several apps on full pages need more to keep both the
# decoding and the database busy: 4 apps of 1 M rows made 93,700 rows/s at 40,000 and 102,800 at
# 80,000 (bench fleet-big, peak RSS 194 -> 274 MB).
FLEET_BUFFER_ROWS = 80_000

# A worker's jobs at once (`worker --concurrency`), and the seconds without a heartbeat after
# which its jobs go back to the queue (`--stall-timeout`; sync.queue).
DEFAULT_WORKER_JOBS = 8
MAX_WORKER_JOBS = 64
DEFAULT_STALL_TIMEOUT = 30.0
# The sandbox apps `demo` syncs, the last as a service provider's merchant.
DEMO_APPS = 3
