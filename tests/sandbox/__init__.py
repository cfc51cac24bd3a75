"""Tests of the sandbox (`sync.sandbox`) over real HTTP, driven by the test's clock."""
