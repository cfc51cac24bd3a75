"""The platform's API as this project uses it: `http` (the aiohttp edge), `tokens`, `limiter` (10
requests in any sliding second), `retry` (backoff arithmetic), `paging` (a window's page state),
`client` (the one request-retry loop and the daily-data endpoint), `talents` (the roster
endpoints) and `connect` (an app's client: session, token source and its own limiter).

Everything that leaves the process goes through here; what comes back leaves as typed pages.
"""
