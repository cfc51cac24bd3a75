"""The platform's API as this project uses it: HTTP edge, access tokens, the request-rate limiter,
retry timing, paging state, and the two endpoints (daily video data, exclusive-task talents).

Everything that leaves the process goes through here; what comes back leaves as typed pages.
"""
